//! The 22 TPC-H queries in PostgreSQL's dialect with the specification's validation parameters, from the
//! `tpchgen` crate's qgen templates.

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
    ("", &[], None), // Q15: a view in the template; written as a CTE below.
    (q::Q16, &["Brand#45", "MEDIUM POLISHED", "49", "14", "23", "45", "19", "3", "36", "9"], None),
    (q::Q17, &["Brand#23", "MED BOX"], None),
    (q::Q18, &["300"], Some(100)),
    (q::Q19, &["Brand#12", "Brand#23", "Brand#34", "1", "10", "20"], None),
    (q::Q20, &["forest", "1994-01-01", "CANADA"], None),
    (q::Q21, &["SAUDI ARABIA"], Some(100)),
    (q::Q22, &["13", "31", "23", "29", "30", "18", "17"], None),
];

/// Q15 as one statement (the template creates and drops a view).
const Q15: &str = "with revenue (supplier_no, total_revenue) as (
    select l_suppkey, sum(l_extendedprice * (1 - l_discount))
    from lineitem
    where l_shipdate >= date '1996-01-01' and l_shipdate < date '1996-01-01' + interval '3' month
    group by l_suppkey)
select s_suppkey, s_name, s_address, s_phone, total_revenue
from supplier, revenue
where s_suppkey = supplier_no and total_revenue = (select max(total_revenue) from revenue)
order by s_suppkey";

/// The 22 queries, numbered from 1. Q11's fraction is `0.0001 / scale_factor`, as the specification says.
pub(crate) fn queries(scale_factor: f64) -> Vec<(usize, String)> {
    QUERIES
        .iter()
        .enumerate()
        .map(|(i, (template, params, limit))| {
            if i == 14 {
                return (15, Q15.to_owned());
            }
            let mut text = (*template).to_owned();
            // Replace :10 before :1.
            for (n, value) in params.iter().enumerate().rev() {
                let value =
                    if *value == "FRACTION" { format!("{}", 0.0001 / scale_factor) } else { (*value).to_owned() };
                text = text.replace(&format!(":{}", n + 1), &value);
            }
            let mut text = text.replace(" day (3)", " day").trim().trim_end_matches(';').trim().to_owned();
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
    }
}
