//! The 22 TPC-H queries in PostgreSQL's dialect with the specification's validation parameters, from the
//! `tpchgen` crate's qgen templates, and a held-out test set: the same templates with other values from the
//! specification's substitution domains (§2.4), which the learner has not executed.

use tpchgen::q_and_a::queries as q;

/// (template, substitution parameters `:1`, `:2`, …, row limit qgen appends).
const QUERIES: [(&str, &[&str], Option<u32>); 22] = [
    (q::Q1, &["90"], None),
    (q::Q2, &["15", "BRASS", "EUROPE"], Some(100)),
    (q::Q3, &["BUILDING", "1995-03-15"], Some(10)),
    (q::Q4, &["1993-07-01"], None),
    (q::Q5, &["ASIA", "1994-01-01"], None),
    (q::Q6, &["1994-01-01", "0.06", "24"], None),
    (q::Q7, &["FRANCE", "GERMANY"], None),
    (q::Q8, &["BRAZIL", "AMERICA", "ECONOMY ANODIZED STEEL"], None),
    (q::Q9, &["green"], None),
    (q::Q10, &["1993-10-01"], Some(20)),
    (q::Q11, &["GERMANY", "FRACTION"], None),
    (q::Q12, &["MAIL", "SHIP", "1994-01-01"], None),
    (q::Q13, &["special", "requests"], None),
    (q::Q14, &["1995-09-01"], None),
    ("", &["1996-01-01"], None), // Q15: a view in the template; written as a CTE below.
    (q::Q16, &["Brand#45", "MEDIUM POLISHED", "49", "14", "23", "45", "19", "3", "36", "9"], None),
    (q::Q17, &["Brand#23", "MED BOX"], None),
    (q::Q18, &["300"], Some(100)),
    (q::Q19, &["Brand#12", "Brand#23", "Brand#34", "1", "10", "20"], None),
    (q::Q20, &["forest", "1994-01-01", "CANADA"], None),
    (q::Q21, &["SAUDI ARABIA"], Some(100)),
    (q::Q22, &["13", "31", "23", "29", "30", "18", "17"], None),
];

/// The test set's parameters, in the order of [`QUERIES`]: another value of each parameter's domain (§2.4.1–22).
const TEST: [&[&str]; 22] = [
    &["75"],
    &["30", "STEEL", "ASIA"],
    &["MACHINERY", "1995-03-28"],
    &["1995-01-01"],
    &["EUROPE", "1996-01-01"],
    &["1996-01-01", "0.04", "25"],
    &["JAPAN", "CHINA"],
    &["JAPAN", "ASIA", "PROMO BRUSHED COPPER"],
    &["blue"],
    &["1994-07-01"],
    &["JAPAN", "FRACTION"],
    &["TRUCK", "RAIL", "1996-01-01"],
    &["express", "deposits"],
    &["1994-06-01"],
    &["1994-04-01"], // Q15's date, in its CTE form
    &["Brand#32", "SMALL PLATED", "3", "12", "21", "27", "33", "40", "44", "50"],
    &["Brand#41", "LG CAN"],
    &["313"],
    &["Brand#31", "Brand#42", "Brand#53", "5", "15", "25"],
    &["azure", "1996-01-01", "JAPAN"],
    &["JAPAN"],
    &["10", "11", "14", "19", "22", "25", "33"],
];

/// Q15 as one statement (the template creates and drops a view), its date `:1`.
const Q15: &str = "with revenue (supplier_no, total_revenue) as (
    select l_suppkey, sum(l_extendedprice * (1 - l_discount))
    from lineitem
    where l_shipdate >= date ':1' and l_shipdate < date ':1' + interval '3' month
    group by l_suppkey)
select s_suppkey, s_name, s_address, s_phone, total_revenue
from supplier, revenue
where s_suppkey = supplier_no and total_revenue = (select max(total_revenue) from revenue)
order by s_suppkey";

/// The 22 queries, numbered from 1. Q11's fraction is `0.0001 / scale_factor`, as the specification says.
pub(crate) fn queries(scale_factor: f64) -> Vec<(usize, String)> {
    substituted(scale_factor, |i| QUERIES[i].1)
}

/// The held-out test set: the 22 templates with the [`TEST`] parameters, numbered as their templates.
pub(crate) fn test_queries(scale_factor: f64) -> Vec<(usize, String)> {
    substituted(scale_factor, |i| TEST[i])
}

fn substituted<'a>(scale_factor: f64, params: impl Fn(usize) -> &'a [&'a str]) -> Vec<(usize, String)> {
    QUERIES
        .iter()
        .enumerate()
        .map(|(i, (template, _, limit))| {
            let params = params(i);
            let mut text = if i == 14 { Q15.to_owned() } else { (*template).to_owned() };
            // Replace :10 before :1.
            for (n, value) in params.iter().enumerate().rev() {
                let value =
                    if *value == "FRACTION" { format!("{}", 0.0001 / scale_factor) } else { (*value).to_owned() };
                text = text.replace(&format!(":{}", n + 1), &value);
            }
            let mut text = text.replace(" day (3)", " day").trim().trim_end_matches(';').trim().to_owned();
            if i == 14 {
                return (15, text);
            }
            if let Some(limit) = limit {
                text.push_str(&format!("\nlimit {limit}"));
            }
            (i + 1, text)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parameter_is_substituted_and_each_query_is_one_statement() {
        let qs = queries(1.0);
        assert_eq!(qs.len(), 22);
        for (n, text) in &qs {
            assert!(!text.contains(':') || text.contains("::"), "Q{n} keeps a placeholder: {text}");
            assert!(!text.contains(';'), "Q{n} has several statements");
            assert!(text.to_lowercase().trim_start().starts_with("select") || text.starts_with("with"), "Q{n}");
        }
        assert!(qs[0].1.contains("interval '90' day"));
        assert!(qs[10].1.contains("0.0001"));
        assert!(qs[15].1.contains("p_size in (49, 14, 23, 45, 19, 3, 36, 9)"));
        assert!(qs[17].1.ends_with("limit 100"));
        assert!(qs[14].1.contains("date '1996-01-01' + interval '3' month"));
    }

    #[test]
    fn the_test_set_differs_from_the_queries_in_every_parameter_only() {
        let (train, test) = (queries(1.0), test_queries(1.0));
        assert_eq!(test.len(), 22);
        for ((n, a), (m, b)) in train.iter().zip(&test) {
            assert_eq!(n, m);
            assert_ne!(a, b, "Q{n}");
            assert!(!b.contains(':') || b.contains("::"), "Q{n} keeps a placeholder: {b}");
            assert_eq!(QUERIES[n - 1].1.len(), TEST[n - 1].len(), "Q{n}: as many parameters");
        }
        assert!(test[14].1.contains("date '1994-04-01' + interval '3' month"));
        assert!(test[15].1.contains("p_size in (3, 12, 21, 27, 33, 40, 44, 50)"));
        assert!(test[17].1.contains("> 313") && test[17].1.ends_with("limit 100"));
    }
}
