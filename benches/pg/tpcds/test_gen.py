"""Tests of gen.py's held-out test set (standard library only): python3 benches/pg/tpcds/test_gen.py"""
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen  # noqa: E402


class Variant(unittest.TestCase):
    def test_years_move_forward_unless_the_query_reaches_2001(self):
        self.assertEqual(gen.variant("WHERE d_year IN (1999, 1999+1)"), "WHERE d_year IN (2000, 2000+1)")
        self.assertEqual(gen.variant("WHERE d_year = 2001 AND y = 2001+1"), "WHERE d_year = 2000 AND y = 2000+1")
        self.assertEqual(gen.variant("WHERE d_year = 2002"), "WHERE d_year = 2001")

    def test_dates_and_quarters_move_with_the_years_other_strings_stay(self):
        self.assertEqual(
            gen.variant("WHERE d_date BETWEEN cast('1999-02-22' AS date) AND x AND s = '2000' AND c = 'NY'"),
            "WHERE d_date BETWEEN cast('2000-02-22' AS date) AND x AND s = '2000' AND c = 'NY'",
        )
        self.assertEqual(gen.variant("WHERE q IN ('2001Q1', '2001Q2')"), "WHERE q IN ('2000Q1', '2000Q2')")
        self.assertEqual(gen.variant("WHERE d = '2000-02-29'"), "WHERE d = '2001-02-28'")

    def test_month_sequences_move_by_twelve_only_where_the_query_reads_d_month_seq(self):
        self.assertEqual(
            gen.variant("WHERE d_month_seq BETWEEN 1200 AND 1200 + 11"), "WHERE d_month_seq BETWEEN 1212 AND 1212 + 11"
        )
        self.assertEqual(gen.variant("WHERE d_month_seq = 1212 + 12"), "WHERE d_month_seq = 1200 + 12")
        self.assertIsNone(gen.variant("WHERE x = 1200"))

    def test_other_numbers_stay_and_queries_without_such_parameters_get_none(self):
        self.assertEqual(
            gen.variant("WHERE d_year = 1999 AND p = 1999.5 AND c1999 = 2"),
            "WHERE d_year = 2000 AND p = 1999.5 AND c1999 = 2",
        )
        self.assertIsNone(gen.variant("SELECT count(*) FROM store_sales WHERE ss_quantity BETWEEN 1 AND 20"))
        self.assertIsNone(gen.variant("WHERE d_year = 1998 OR d_year = 2001"))

    def test_the_test_set_has_a_file_per_query_with_a_variant(self):
        with tempfile.TemporaryDirectory() as out:
            os.makedirs(os.path.join(out, "queries"))
            for name, text in [("01.sql", "WHERE d_year = 2000"), ("02.sql", "SELECT 1")]:
                with open(os.path.join(out, "queries", name), "w") as f:
                    f.write(text)
            gen.write_test_set(out)
            self.assertEqual(os.listdir(os.path.join(out, "test")), ["01.sql"])
            with open(os.path.join(out, "test", "01.sql")) as f:
                self.assertEqual(f.read(), "WHERE d_year = 2001")


if __name__ == "__main__":
    unittest.main()
