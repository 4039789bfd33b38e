//! Variables a user type reads and never sets: each request that reads one fails before it is
//! sent, so a run of such a scenario makes errors by the hundred thousand instead of load.
//! A variable is set by the type's `vars` or by a step's `extract` or `append`; `${user}`,
//! `${run}` and `${seq}` are built in, and a job's `${id}` exists only in its `track.poll`,
//! which is not checked here.

use std::collections::BTreeSet;

use super::{Body, MultipartPart, Template, UserType, ValueTemplate};

/// A message naming the first variable `user` reads and never sets, and where it reads it.
pub(super) fn never_set(user: &UserType) -> Option<String> {
    let set = settable(user);
    let (variable, place) = reads(user)
        .into_iter()
        .find(|(variable, _)| !set.contains(variable.as_str()))?;
    let mut known: Vec<&str> = set.into_iter().collect();
    if known.is_empty() {
        known.push("none");
    }
    Some(format!(
        "user type `{}`: {place} reads ${{{variable}}}, which nothing sets: set it in `vars` \
         or with a step's `extract` or `append` (set: {})",
        user.name,
        known.join(", ")
    ))
}

/// The variables `user` sets: its `vars`, and its steps' `extract` and `append`.
pub(super) fn settable(user: &UserType) -> BTreeSet<&str> {
    user.vars
        .iter()
        .map(|(name, _)| name.as_str())
        .chain(
            user.steps
                .iter()
                .flat_map(|s| s.extract.iter().chain(&s.append))
                .map(|(name, _)| name.as_str()),
        )
        .collect()
}

/// A message naming an `unless = "VAR"` of `user` whose variable nothing sets: the step would
/// always run, which is not what its author meant.
pub(super) fn unless_never_set(user: &UserType) -> Option<String> {
    let set = settable(user);
    let refs = user
        .on_start
        .iter()
        .chain(user.tasks.iter().flat_map(|t| &t.run))
        .chain(&user.on_stop);
    for step_ref in refs {
        if let Some(variable) = &step_ref.unless
            && !set.contains(&**variable)
        {
            let step = user
                .steps
                .get(step_ref.step)
                .map_or("?", |s| s.key.as_str());
            return Some(format!(
                "user type `{}`: step `{step}`: unless = {variable:?} names a variable that \
                 nothing sets, so the step would always run: name one that `vars`, `extract` \
                 or `append` sets (a --user-data column may then give it)",
                user.name
            ));
        }
    }
    None
}

/// Every variable the type's templates read, with where.
fn reads(user: &UserType) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut add = |template: &Template, place: &dyn Fn() -> String| {
        for variable in template.variables() {
            found.push((variable.to_owned(), place()));
        }
    };
    for (name, value) in &user.vars {
        for template in value_templates(value) {
            add(template, &|| format!("vars.{name}"));
        }
    }
    for (name, template) in &user.headers {
        add(template, &|| format!("header {name}"));
    }
    for step in &user.steps {
        let key = &step.key;
        add(&step.path, &|| format!("step `{key}`: path"));
        for (name, template) in &step.headers {
            add(template, &|| format!("step `{key}`: header {name}"));
        }
        match &step.body {
            Body::Empty => {}
            Body::Json(value) => {
                for template in value_templates(value) {
                    add(template, &|| format!("step `{key}`: json"));
                }
            }
            Body::Form(fields) => {
                for (name, template) in fields {
                    add(template, &|| format!("step `{key}`: form.{name}"));
                }
            }
            Body::Multipart(parts) => {
                for (name, part) in parts {
                    if let MultipartPart::Text(template) = part {
                        add(template, &|| format!("step `{key}`: multipart.{name}"));
                    }
                }
            }
        }
    }
    found
}

/// The templates in a JSON value's tree.
fn value_templates(value: &ValueTemplate) -> Vec<&Template> {
    match value {
        ValueTemplate::Template(template) => vec![template],
        ValueTemplate::Literal(_) => Vec::new(),
        ValueTemplate::Array(items) => items.iter().flat_map(value_templates).collect(),
        ValueTemplate::Object(fields) => fields
            .iter()
            .flat_map(|(_, value)| value_templates(value))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn check(text: &str) -> Result<(), String> {
        super::super::parse(text, "t.toml", Path::new("."))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    const HEAD: &str = "[[users]]\nname = 'U'\n";
    const TASK: &str = "[[users.tasks]]\nrun = ['get']\n";

    #[test]
    fn a_variable_read_and_never_set_is_named_with_where_it_is_read() {
        let error = check(&format!(
            "{HEAD}{TASK}[users.steps.get]\npath = '/tasks/${{task_id}}'\n"
        ))
        .unwrap_err();
        assert!(
            error.starts_with("t.toml:1:1: user type `U`: step `get`: path reads ${task_id}"),
            "{error}"
        );
        let error = check(&format!(
            "{HEAD}{TASK}[users.headers]\nAuthorization = 'Bearer ${{tokn}}'\n\
             [users.steps.get]\npath = '/'\nextract = {{ token = 'access_token' }}\n"
        ))
        .unwrap_err();
        assert!(
            error.contains("header Authorization reads ${tokn}") && error.contains("set: token"),
            "{error}"
        );
        let error = check(&format!(
            "{HEAD}{TASK}[users.steps.get]\npath = '/'\nmethod = 'POST'\n\
             json = {{ ids = ['${{pick videos 2}}'] }}\n"
        ))
        .unwrap_err();
        assert!(error.contains("json reads ${videos}"), "{error}");
    }

    #[test]
    fn unless_names_a_variable_the_scenario_sets() {
        let login = "[users.steps.login]\npath = '/login'\nextract = { token = 't' }\n\
                     [users.steps.get]\npath = '/'\n";
        check(&format!(
            "{HEAD}on_start = [{{ step = 'login', unless = 'token' }}]\n{TASK}{login}"
        ))
        .unwrap();
        let error = check(&format!(
            "{HEAD}on_start = [{{ step = 'login', unless = 'tokn' }}]\n{TASK}{login}"
        ))
        .unwrap_err();
        assert!(
            error.contains("step `login`: unless = \"tokn\" names a variable that nothing sets"),
            "{error}"
        );
    }

    #[test]
    fn variables_set_by_vars_extract_or_append_and_built_ins_pass() {
        check(&format!(
            "{HEAD}{TASK}[users.vars]\nemail = 'u${{user}}-${{run}}@x.test'\n\
             [users.headers]\nAuthorization = 'Bearer ${{token}}'\n\
             [users.steps.login]\npath = '/login'\nmethod = 'POST'\n\
             json = {{ email = '${{email}}', n = '${{seq}}' }}\nextract = {{ token = 'token' }}\n\
             [users.steps.upload]\npath = '/up'\nappend = {{ videos = 'id' }}\n\
             [users.steps.get]\npath = '/v'\nmethod = 'POST'\njson = {{ v = '${{pick videos}}' }}\n\
             track = {{ job = 'j', poll = '/jobs/${{id}}' }}\n"
        ))
        .unwrap();
    }
}
