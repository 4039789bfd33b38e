//! Rows of variables for the virtual users (`--user-data FILE`): a CSV file whose header names
//! variables, as a Locust user keeps credentials in a CSV file and JMeter reads one with its
//! "CSV Data Set". User number N (`${user}`) takes row N, in turn when there are more users than
//! rows; a row's values replace the scenario's `vars` of the same name, and an empty cell
//! leaves its variable to `vars` (or unset). Cells are strings, except in a column named
//! `NAME:json`, whose cells are JSON (`[12, 13]`, `7`) for the variable NAME.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Scenario;

/// The suffix of a column whose cells are JSON.
const JSON_SUFFIX: &str = ":json";

/// A checked user-data file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserData {
    /// Its file name, for messages.
    pub name: String,
    /// The variables, in column order.
    pub variables: Vec<String>,
    /// One entry per row: the variables the row sets (empty cells left out).
    pub rows: Vec<Vec<(String, Value)>>,
}

impl UserData {
    /// Reads and checks the CSV file at `path`.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--user-data {}: cannot read it: {e}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses CSV text; `name` names it in errors.
    pub fn parse(text: &str, name: &str) -> Result<Self, String> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(text.as_bytes());
        let headers = reader
            .headers()
            .map_err(|e| format!("--user-data {name}: {e}"))?
            .clone();
        let mut variables = Vec::new();
        let mut json = Vec::new();
        for header in &headers {
            let header = header.trim();
            let (variable, is_json) = match header.strip_suffix(JSON_SUFFIX) {
                Some(variable) => (variable, true),
                None => (header, false),
            };
            let valid = !variable.is_empty()
                && variable
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "--user-data {name}: column {header:?}: the header row names variables \
                     (letters, digits, _; `NAME:json` for JSON cells), e.g. username,password"
                ));
            }
            if variables.iter().any(|v| v == variable) {
                return Err(format!(
                    "--user-data {name}: column {variable:?} appears twice"
                ));
            }
            variables.push(variable.to_owned());
            json.push(is_json);
        }
        let mut rows = Vec::new();
        for (index, record) in reader.records().enumerate() {
            let record = record.map_err(|e| format!("--user-data {name}: {e}"))?;
            let line = index + 2;
            let mut row = Vec::new();
            for ((cell, variable), is_json) in record.iter().zip(&variables).zip(&json) {
                if cell.is_empty() {
                    continue;
                }
                let value = if *is_json {
                    serde_json::from_str(cell).map_err(|e| {
                        format!(
                            "--user-data {name}: line {line}: column {variable}:json: \
                             {cell:?} is not JSON ({e})"
                        )
                    })?
                } else {
                    Value::String(cell.to_owned())
                };
                row.push((variable.clone(), value));
            }
            rows.push(row);
        }
        if rows.is_empty() {
            return Err(format!(
                "--user-data {name}: no rows under the header: give one row per user (rows are \
                 shared in turn when there are more users)"
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            variables,
            rows,
        })
    }

    /// The row of user number `number` (1-based, as `${user}`).
    pub fn row(&self, number: u64) -> &[(String, Value)] {
        let len = self.rows.len() as u64;
        let index = number.saturating_sub(1) % len.max(1);
        self.rows
            .get(usize::try_from(index).unwrap_or(0))
            .map_or(&[], Vec::as_slice)
    }

    /// Fails naming a column that is no variable of the scenario: a typo there would leave the
    /// scenario's own value in place, silently.
    pub fn check(&self, scenario: &Scenario) -> Result<(), String> {
        let known: BTreeSet<&str> = scenario
            .users
            .iter()
            .flat_map(super::variables::settable)
            .collect();
        for variable in &self.variables {
            if !known.contains(variable.as_str()) {
                let known: Vec<&str> = known.iter().copied().collect();
                return Err(format!(
                    "--user-data {}: column {variable:?} is no variable of the scenario: a column \
                     replaces a variable that `vars`, `extract` or `append` sets (the scenario's: {})",
                    self.name,
                    known.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// Writes rows of variables as a user-data CSV file's text: `columns` are variable names, with
/// `:json` for JSON cells; `None` leaves a cell empty.
pub fn to_csv(columns: &[&str], rows: &[Vec<Option<String>>]) -> Result<String, String> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record(columns)
        .map_err(|e| format!("user data: {e}"))?;
    for row in rows {
        writer
            .write_record(row.iter().map(|cell| cell.as_deref().unwrap_or("")))
            .map_err(|e| format!("user data: {e}"))?;
    }
    let bytes = writer.into_inner().map_err(|e| format!("user data: {e}"))?;
    String::from_utf8(bytes).map_err(|e| format!("user data: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_set_strings_and_json_and_users_take_them_in_turn() {
        let data = UserData::parse(
            "username,token,videos:json\nalice,t1,\"[1,2]\"\nbob,,\"[3]\"\n",
            "a.csv",
        )
        .unwrap();
        assert_eq!(data.variables, ["username", "token", "videos"]);
        assert_eq!(
            data.row(1),
            [
                ("username".to_owned(), Value::from("alice")),
                ("token".to_owned(), Value::from("t1")),
                ("videos".to_owned(), serde_json::json!([1, 2])),
            ]
        );
        // An empty cell leaves the variable unset; user 3 takes row 1 again.
        assert_eq!(data.row(2).len(), 2);
        assert_eq!(data.row(3), data.row(1));
    }

    #[test]
    fn bad_files_are_refused_with_the_fix() {
        let error = UserData::parse("username\n", "a.csv").unwrap_err();
        assert!(error.contains("no rows"), "{error}");
        let error = UserData::parse("user name\nx\n", "a.csv").unwrap_err();
        assert!(error.contains("header row names variables"), "{error}");
        let error = UserData::parse("ids:json\n\"[1,\"\n", "a.csv").unwrap_err();
        assert!(error.contains("line 2: column ids:json"), "{error}");
        let error = UserData::parse("a,a\n1,2\n", "a.csv").unwrap_err();
        assert!(error.contains("appears twice"), "{error}");
    }

    #[test]
    fn a_column_must_be_a_variable_of_the_scenario() {
        let scenario = super::super::parse(
            "[[users]]\nname = 'U'\nvars = { username = 'u${user}' }\n\
             [[users.tasks]]\nrun = ['get']\n[users.steps.get]\npath = '/${username}'\n",
            "t.toml",
            Path::new("."),
        )
        .unwrap();
        let ok = UserData::parse("username\nalice\n", "a.csv").unwrap();
        ok.check(&scenario).unwrap();
        let typo = UserData::parse("usrname\nalice\n", "a.csv").unwrap();
        let error = typo.check(&scenario).unwrap_err();
        assert!(
            error.contains("column \"usrname\" is no variable") && error.contains("username"),
            "{error}"
        );
    }

    #[test]
    fn written_rows_read_back() {
        let text = to_csv(
            &["username", "videos:json"],
            &[vec![Some("a,\"b".to_owned()), Some("[1,2]".to_owned())]],
        )
        .unwrap();
        let data = UserData::parse(&text, "w.csv").unwrap();
        assert_eq!(data.row(1)[0].1, Value::from("a,\"b"));
        assert_eq!(data.row(1)[1].1, serde_json::json!([1, 2]));
    }
}
