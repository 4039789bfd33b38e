//! Keeps the promise that every rule has a unit test: reads the rule tables and the layers'
//! sources, and fails when a rule in [`super::VALIDITY_RULES`] or [`super::RULES`] is never
//! called in the `mod tests` of its file, when a rule function is missing from the tables (it
//! would never run), or when a layer file is not read here.

/// Each layer's file, as compiled: a rule `layer::name` lives in `layer.rs`.
const LAYERS: &[(&str, &str)] = &[
    ("containers", include_str!("containers.rs")),
    ("host", include_str!("host.rs")),
    ("jobs", include_str!("jobs.rs")),
    ("load", include_str!("load.rs")),
    ("loadgen", include_str!("loadgen.rs")),
    ("postgres", include_str!("postgres.rs")),
    ("profiles", include_str!("profiles.rs")),
    ("redis", include_str!("redis.rs")),
    ("statements", include_str!("statements.rs")),
    ("watch", include_str!("watch.rs")),
];

/// The files of `diagnosis/` that hold no rule.
const NOT_LAYERS: &[&str] = &["mod", "evidence", "testing", "coverage", "tasks"];

/// The tables.
const TABLES: &str = include_str!("mod.rs");

/// The entries (`layer::name`) of the table `const NAME: &[Rule] = &[ ... ];` in `source`.
fn table(source: &str, name: &str) -> Vec<(String, String)> {
    let opening = format!("pub const {name}: &[Rule] = &[");
    let start = source
        .find(&opening)
        .unwrap_or_else(|| panic!("no `{opening}` in diagnosis/mod.rs"));
    source[start + opening.len()..]
        .lines()
        .map(str::trim)
        .take_while(|line| *line != "];")
        .filter(|line| !line.is_empty() && !line.starts_with("//"))
        .map(|entry| {
            let entry = entry.trim_end_matches(',');
            let (layer, rule) = entry
                .split_once("::")
                .unwrap_or_else(|| panic!("{name}: `{entry}` is not `layer::rule`"));
            (layer.to_owned(), rule.to_owned())
        })
        .collect()
}

/// The source of `layer.rs`, split at its `mod tests` (see [`split`]).
fn layer(layer: &str) -> (&'static str, String) {
    let (_, source) = LAYERS
        .iter()
        .find(|(name, _)| *name == layer)
        .unwrap_or_else(|| panic!("diagnosis/{layer}.rs is not in LAYERS of coverage.rs"));
    split(source).unwrap_or_else(|| panic!("diagnosis/{layer}.rs has no `mod tests`"))
}

/// `source` split at its `mod tests`: (the code, the tests without their comment lines).
fn split(source: &str) -> Option<(&str, String)> {
    let at = source.find("#[cfg(test)]\nmod tests {")?;
    let tests = source[at..]
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    Some((&source[..at], tests))
}

/// Whether `code` calls `rule` or passes it as a rule (`with_evidence(&run, &[], rule)`):
/// the name as a whole word, not a part of a rule's id (`"load.plateau"`) or a `use` list.
fn calls(code: &str, rule: &str) -> bool {
    code.match_indices(rule).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + rule.len()..].chars().next();
        before.is_some_and(|c| " \t\n(,&:[".contains(c))
            && after.is_some_and(|c| " \n(),;]".contains(c))
    })
}

/// The public rule functions of `code`: `pub fn name(e: &Evidence<'_>) -> Vec<Finding>`.
fn rule_functions(code: &str) -> Vec<&str> {
    code.lines()
        .filter_map(|line| line.strip_prefix("pub fn "))
        .filter(|rest| rest.contains("&Evidence<'_>) -> Vec<Finding>"))
        .filter_map(|rest| rest.split('(').next())
        .collect()
}

#[test]
fn every_rule_of_the_tables_is_called_in_the_tests_of_its_file() {
    let validity = table(TABLES, "VALIDITY_RULES");
    let rules = table(TABLES, "RULES");
    // The reading of the tables must see every rule the compiler sees.
    assert_eq!(
        (validity.len(), rules.len()),
        (super::VALIDITY_RULES.len(), super::RULES.len()),
        "the tables as read from diagnosis/mod.rs: {validity:?} {rules:?}"
    );
    let all: Vec<(String, String)> = validity.into_iter().chain(rules).collect();
    let mut untested = Vec::new();
    for (at, (layer_name, rule)) in all.iter().enumerate() {
        assert!(
            !all[..at].contains(&all[at]),
            "{layer_name}::{rule} is listed twice: it would find everything twice"
        );
        let (code, tests) = layer(layer_name);
        assert!(
            rule_functions(code).contains(&rule.as_str()),
            "{layer_name}::{rule} is not a `pub fn {rule}(e: &Evidence<'_>) -> Vec<Finding>` of diagnosis/{layer_name}.rs"
        );
        if !calls(&tests, rule) {
            untested.push(format!("{layer_name}::{rule}"));
        }
    }
    assert!(
        untested.is_empty(),
        "rules never called in the `mod tests` of their file (each needs a unit test that \
         makes it fire and one that keeps it quiet): {untested:?}"
    );
}

#[test]
fn every_rule_function_is_in_a_table_and_every_layer_is_read() {
    let listed: Vec<(String, String)> = table(TABLES, "VALIDITY_RULES")
        .into_iter()
        .chain(table(TABLES, "RULES"))
        .collect();
    let mut unlisted = Vec::new();
    for (name, _) in LAYERS {
        let (code, _) = layer(name);
        for rule in rule_functions(code) {
            if !listed.contains(&((*name).to_owned(), rule.to_owned())) {
                unlisted.push(format!("{name}::{rule}"));
            }
        }
    }
    assert!(
        unlisted.is_empty(),
        "rule functions in no table, so never run: {unlisted:?}"
    );
    let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/src/diagnosis");
    let entries = std::fs::read_dir(folder).unwrap_or_else(|e| panic!("{folder}: {e}"));
    let mut unread = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let known = LAYERS.iter().any(|(name, _)| *name == stem) || NOT_LAYERS.contains(&stem);
        if path.extension().is_some_and(|e| e == "rs") && !known {
            unread.push(stem.to_owned());
        }
    }
    assert!(
        unread.is_empty(),
        "files of diagnosis/ that coverage.rs does not read (add them to LAYERS, or to \
         NOT_LAYERS when they hold no rule): {unread:?}"
    );
}

#[test]
fn the_reading_tells_a_call_from_a_rule_id() {
    assert!(calls("with_evidence(&run, &[], plateau)", "plateau"));
    assert!(calls("let f = super::plateau(&e);", "plateau"));
    assert!(!calls(r#"assert_eq!(f.rule, "load.plateau");"#, "plateau"));
    assert!(!calls("use super::{plateau, refused};", "plateau"));
    assert!(!calls("with_evidence(&run, &[], plateau_of)", "plateau"));
    let source = "pub fn plateau(e: &Evidence<'_>) -> Vec<Finding> {}\n#[cfg(test)]\nmod tests {\n    // with_evidence(&run, &[], plateau)\n}\n";
    let (code, tests) = split(source).unwrap_or_default();
    assert_eq!(rule_functions(code), ["plateau"]);
    assert!(
        !calls(&tests, "plateau"),
        "comment lines do not count: {tests}"
    );
    assert!(split("pub fn plateau() {}").is_none());
}
