//! The shipped `ruvector.toml` and loading from files with environment overrides.

use ruvector_dag::Config;
use ruvector_dag::config::Selection;
use ruvector_dag_tests::repo_root;
use std::path::PathBuf;

fn write(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ruvector-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_shipped_default_file_states_the_defaults() {
    let config = Config::load_with_env(Some(&repo_root().join("ruvector.toml")), Vec::new()).unwrap();
    assert_eq!(config, Config::default(), "ruvector.toml must document the built-in defaults exactly");
}

#[test]
fn env_overrides_the_file_and_errors_say_where_values_came_from() {
    let path = write("override.toml", "[learning]\nlearning_rate = 0.05\npattern_clusters = 50\n");
    let env = vec![("RUVECTOR__LEARNING__PATTERN_CLUSTERS".to_owned(), "200".to_owned())];
    let config = Config::load_with_env(Some(&path), env).unwrap();
    assert_eq!(config.learning.learning_rate, 0.05, "from the file");
    assert_eq!(config.learning.pattern_clusters, 200, "the environment wins");

    let bad = write("bad.toml", "[healing]\nwindow_size = 2\n");
    let err = Config::load_with_env(Some(&bad), Vec::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("healing.window_size = 2 (in {}): expected an integer in 8..=1000000", bad.display())
    );
}

#[test]
fn dynamic_plugins_are_listed_in_order() {
    let path = write(
        "dynamic.toml",
        r#"
        [[plugins.dynamic]]
        path = "/opt/ruvector/libfirst.so"
        [[plugins.dynamic]]
        path = "plugins/libthird.so"
        [[plugins.dynamic]]
        path = "/opt/ruvector/libsecond.so"
        sha256 = "ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
        "#,
    );
    let config = Config::load_with_env(Some(&path), Vec::new()).unwrap();
    let d = &config.plugins.dynamic;
    assert_eq!(d.len(), 3);
    assert_eq!(d[0].path, PathBuf::from("/opt/ruvector/libfirst.so"));
    assert_eq!(d[0].sha256, None);
    assert_eq!(d[1].path, path.parent().unwrap().join("plugins/libthird.so"), "relative to the file");
    assert_eq!(d[2].sha256.as_deref(), Some("abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"));
    assert_eq!(config.attention.enabled, Selection::All);
}
