//! TPC-DS from a directory written by `benches/pg/tpcds/gen.py` (DuckDB's dsdgen and its 99 qualification
//! queries): `schema.sql`, `data/<table>.csv`, `keys.sql`, `queries/NN.sql` and the held-out `test/NN.sql`.

use postgres::Client;
use std::io::Write;
use std::path::Path;

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

/// The table names `schema.sql` creates, in its order.
fn tables(schema: &str) -> Vec<&str> {
    schema
        .lines()
        .filter_map(|l| l.strip_prefix("CREATE TABLE "))
        .filter_map(|rest| rest.split([' ', '(']).next())
        .collect()
}

/// Creates the 24 tables, streams each CSV file into its table with `COPY … FROM STDIN`, adds the primary keys and
/// analyzes; `progress(table, done, total)` after each table.
pub(crate) fn load(
    client: &mut Client,
    dir: &Path,
    mut progress: impl FnMut(&str, usize, usize),
) -> Result<(), String> {
    if !dir.join("done").exists() {
        return Err(format!("{}: not a complete TPC-DS directory (run benches/pg/tpcds/gen.py first)", dir.display()));
    }
    let schema = read(&dir.join("schema.sql"))?;
    client.batch_execute(&schema).map_err(|e| format!("creating the TPC-DS schema: {e}"))?;
    let names = tables(&schema);
    for (i, table) in names.iter().enumerate() {
        let path = dir.join("data").join(format!("{table}.csv"));
        let fail = |e: &dyn std::fmt::Display| format!("loading {table} from {}: {e}", path.display());
        let mut file = std::fs::File::open(&path).map_err(|e| fail(&e))?;
        let mut writer = client.copy_in(&format!("COPY {table} FROM STDIN (FORMAT csv)")).map_err(|e| fail(&e))?;
        std::io::copy(&mut file, &mut writer).map_err(|e| fail(&e))?;
        writer.flush().map_err(|e| fail(&e))?;
        writer.finish().map_err(|e| fail(&e))?;
        progress(table, i + 1, names.len());
    }
    client.batch_execute(&read(&dir.join("keys.sql"))?).map_err(|e| format!("adding primary keys: {e}"))?;
    client.batch_execute("ANALYZE").map_err(|e| format!("analyzing: {e}"))?;
    Ok(())
}

/// The queries `queries/NN.sql`, numbered by their file name, in order.
pub(crate) fn queries(dir: &Path) -> Result<Vec<(usize, String)>, String> {
    numbered(&dir.join("queries"))
}

/// The held-out test set `test/NN.sql` (gen.py's variants of the templates with other parameter values), numbered
/// as their templates, in order.
pub(crate) fn test_queries(dir: &Path) -> Result<Vec<(usize, String)>, String> {
    numbered(&dir.join("test")).map_err(|e| format!("{e} (gen.py writes the test set; run it again)"))
}

/// The `NN.sql` files of `qdir`, numbered by their file name, in order, without their final semicolon.
fn numbered(qdir: &Path) -> Result<Vec<(usize, String)>, String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(qdir).map_err(|e| format!("reading {}: {e}", qdir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let Some(n) = path.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse::<usize>().ok()) else {
            continue;
        };
        out.push((n, read(&path)?.trim().trim_end_matches(';').to_owned()));
    }
    if out.is_empty() {
        return Err(format!("{}: no NN.sql query files", qdir.display()));
    }
    out.sort_by_key(|(n, _)| *n);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_come_from_the_schema_in_order() {
        let schema = "CREATE TABLE call_center (cc_call_center_sk integer);\nCREATE TABLE item(i_item_sk integer);\n";
        assert_eq!(tables(schema), ["call_center", "item"]);
    }

    #[test]
    fn queries_are_read_in_numeric_order_without_their_semicolon() {
        let dir = std::env::temp_dir().join(format!("rv-tpcds-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("queries")).unwrap();
        std::fs::write(dir.join("queries/10.sql"), "SELECT 10;\n").unwrap();
        std::fs::write(dir.join("queries/02.sql"), "SELECT 2\n").unwrap();
        std::fs::write(dir.join("queries/notes.txt"), "not a query").unwrap();
        let q = queries(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(q, [(2, "SELECT 2".to_owned()), (10, "SELECT 10".to_owned())]);
    }

    #[test]
    fn a_directory_without_queries_is_named_in_the_error() {
        let err = queries(Path::new("/nonexistent/tpcds")).unwrap_err();
        assert!(err.contains("/nonexistent/tpcds/queries"), "{err}");
        let err = test_queries(Path::new("/nonexistent/tpcds")).unwrap_err();
        assert!(err.contains("/nonexistent/tpcds/test") && err.contains("gen.py"), "{err}");
    }
}
