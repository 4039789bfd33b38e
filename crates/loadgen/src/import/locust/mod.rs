//! `loadgen import locust FILE`: a locustfile read with Ruff's Python parser (never run) and
//! written as a scenario. Each `HttpUser`/`FastHttpUser` class is a user type (`weight`,
//! `fixed_count`, `wait_time`, `@tag`), its `on_start` the start-up steps, each `@task`
//! (or `tasks = [...]`/`{...}` entry, nested `TaskSet`s flattened with their shares kept, a
//! `SequentialTaskSet` one task running its steps in order) a weighted task, each request a
//! step. Module constants are put in place. What has no counterpart is kept as a comment
//! with its lines, and listed in [`Imported::untranslated`].

mod body;
mod emit;
mod expr;
mod request;
#[cfg(test)]
mod tests;
mod user;

use std::collections::HashMap;

use ruff_python_ast::{self as ast, Expr, Stmt};
use ruff_text_size::{Ranged, TextRange};

use self::emit::UserOut;
use self::expr::{Consts, dotted, literal};
use super::{ImportError, Imported, Untranslated, line_column};

/// The parsed locustfile and what every class may read.
pub struct Module<'a> {
    source: &'a str,
    consts: Consts,
    classes: HashMap<String, &'a ast::StmtClassDef>,
    functions: HashMap<String, &'a ast::StmtFunctionDef>,
}

/// What a class is, through its bases.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    User,
    TaskSet,
    Sequential,
}

/// A class's attributes and methods, its local bases' first (later ones win).
#[derive(Default)]
struct Members<'a> {
    attrs: Vec<(String, &'a Expr, TextRange)>,
    methods: Vec<&'a ast::StmtFunctionDef>,
    classes: HashMap<String, &'a ast::StmtClassDef>,
    others: Vec<&'a Stmt>,
}

impl<'a> Members<'a> {
    fn attr(&self, name: &str) -> Option<(&'a Expr, TextRange)> {
        self.attrs
            .iter()
            .rev()
            .find(|(n, ..)| n == name)
            .map(|(_, e, r)| (*e, *r))
    }

    fn method_map(&self) -> HashMap<String, &'a ast::StmtFunctionDef> {
        self.methods
            .iter()
            .map(|m| (m.name.id.to_string(), *m))
            .collect()
    }
}

/// Text made of a TOML scalar (a header or query value).
pub(crate) fn emit_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Imports a locustfile's text; `file` names it in messages.
pub fn import(source: &str, file: &str) -> Result<Imported, ImportError> {
    let parsed = ruff_python_parser::parse_module(source).map_err(|e| {
        let (line, column) = line_column(source, e.location.start().to_usize());
        ImportError::Syntax {
            file: file.to_owned(),
            line,
            column,
            message: e.error.to_string(),
        }
    })?;
    let body = &parsed.syntax().body;
    let module = Module::new(source, body);
    let mut header = Vec::new();
    let mut users = Vec::new();
    let mut host = None;
    for stmt in body {
        let Stmt::ClassDef(class) = stmt else {
            continue;
        };
        if module.kind(class) != Some(Kind::User) {
            continue;
        }
        // As Locust's metaclass: `abstract = True` holds for the class that says it, not for
        // its subclasses.
        let abstract_ = class.body.iter().any(|s| match s {
            Stmt::Assign(a) => {
                matches!(a.targets.as_slice(), [Expr::Name(n)] if n.id.as_str() == "abstract")
                    && matches!(a.value.as_ref(), Expr::BooleanLiteral(b) if b.value)
            }
            _ => false,
        });
        if abstract_ {
            continue;
        }
        let members = module.members(class);
        let user = module.user(class, &members);
        host = host.or_else(|| user.host.clone());
        users.push(user);
    }
    if users.is_empty() {
        return Err(ImportError::Empty {
            file: file.to_owned(),
            why: "no HttpUser or FastHttpUser class (that is not `abstract = True`): \
                  nothing to make a user type of"
                .into(),
        });
    }
    for stmt in body {
        if let Some(why) = module.top_level_note(stmt) {
            header.push(module.note(stmt.range(), why));
        }
    }
    let untranslated = collect(&header, &users);
    Ok(Imported {
        toml: emit::write(file, &header, &users),
        untranslated,
        host,
    })
}

/// Every note, in the order of the source's lines.
fn collect(header: &[Untranslated], users: &[UserOut]) -> Vec<Untranslated> {
    let mut all: Vec<Untranslated> = header.to_vec();
    for user in users {
        all.extend(user.notes.iter().cloned());
        for task in &user.tasks {
            all.extend(task.notes.iter().cloned());
        }
        for step in &user.steps {
            all.extend(step.notes.iter().cloned());
        }
    }
    all.sort_by_key(|u| u.line);
    all.dedup();
    all
}

impl<'a> Module<'a> {
    fn new(source: &'a str, body: &'a [Stmt]) -> Self {
        let mut consts = Consts::new();
        let mut classes = HashMap::new();
        let mut functions = HashMap::new();
        for stmt in body {
            match stmt {
                Stmt::Assign(a) => {
                    if let ([Expr::Name(n)], Some(v)) = (a.targets.as_slice(), literal(&a.value)) {
                        consts.insert(n.id.to_string(), v);
                    }
                }
                Stmt::ClassDef(c) => {
                    classes.insert(c.name.id.to_string(), c);
                }
                Stmt::FunctionDef(f) => {
                    functions.insert(f.name.id.to_string(), f);
                }
                _ => {}
            }
        }
        Self {
            source,
            consts,
            classes,
            functions,
        }
    }

    /// An untranslated place: the whole lines of `range`.
    fn note(&self, range: TextRange, why: impl Into<String>) -> Untranslated {
        let start = range.start().to_usize();
        let end = range.end().to_usize();
        let line_start = self.source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.source[end..]
            .find('\n')
            .map_or(self.source.len(), |i| end + i);
        Untranslated {
            line: line_column(self.source, start).0,
            original: self.source[line_start..line_end].to_owned(),
            why: why.into(),
        }
    }

    /// Top-level statements that do something when Locust loads the file: event hooks and
    /// load shapes.
    fn top_level_note(&self, stmt: &Stmt) -> Option<&'static str> {
        match stmt {
            Stmt::FunctionDef(f)
                if f.decorator_list.iter().any(|d| {
                    dotted(decorator_name(&d.expression)).is_some_and(|n| n.contains("events."))
                }) =>
            {
                Some("an event hook: loadgen runs no code of the locustfile")
            }
            Stmt::ClassDef(c)
                if c.arguments.as_ref().is_some_and(|a| {
                    a.args
                        .iter()
                        .any(|b| dotted(b).is_some_and(|n| n.ends_with("LoadTestShape")))
                }) =>
            {
                Some(
                    "a LoadTestShape: write its stages as [[shape]] tables (README \"Load shapes\")",
                )
            }
            _ => None,
        }
    }

    fn kind(&self, class: &ast::StmtClassDef) -> Option<Kind> {
        self.kind_at(class, 0)
    }

    fn kind_at(&self, class: &ast::StmtClassDef, depth: usize) -> Option<Kind> {
        let bases = class.arguments.as_ref()?;
        for base in bases.args.iter() {
            // `Mixin[T]` or a call: not a name, and not what makes this a user class.
            let Some(name) = dotted(base) else {
                continue;
            };
            let last = name.rsplit('.').next().unwrap_or_default();
            match last {
                "HttpUser" | "FastHttpUser" => return Some(Kind::User),
                "SequentialTaskSet" => return Some(Kind::Sequential),
                "TaskSet" => return Some(Kind::TaskSet),
                _ => {}
            }
            if depth < 10
                && let Some(local) = self.classes.get(last)
                && let Some(kind) = self.kind_at(local, depth + 1)
            {
                return Some(kind);
            }
        }
        None
    }

    fn members(&self, class: &'a ast::StmtClassDef) -> Members<'a> {
        let mut members = Members::default();
        self.gather(class, &mut members, 0);
        members
    }

    fn gather(&self, class: &'a ast::StmtClassDef, members: &mut Members<'a>, depth: usize) {
        if let Some(bases) = &class.arguments {
            for base in bases.args.iter() {
                if let Some(local) = dotted(base).and_then(|n| self.classes.get(&n))
                    && depth < 10
                {
                    self.gather(local, members, depth + 1);
                }
            }
        }
        for stmt in &class.body {
            match stmt {
                Stmt::Assign(a) => match a.targets.as_slice() {
                    [Expr::Name(n)] => members.attrs.push((n.id.to_string(), &a.value, a.range)),
                    _ => members.others.push(stmt),
                },
                Stmt::AnnAssign(a) => match (a.target.as_ref(), &a.value) {
                    (Expr::Name(n), Some(v)) => members.attrs.push((n.id.to_string(), v, a.range)),
                    _ => members.others.push(stmt),
                },
                Stmt::FunctionDef(f) => {
                    members.methods.retain(|m| m.name.id != f.name.id);
                    members.methods.push(f);
                }
                Stmt::ClassDef(c) => {
                    members.classes.insert(c.name.id.to_string(), c);
                }
                Stmt::Pass(_) => {}
                Stmt::Expr(e) if matches!(e.value.as_ref(), Expr::StringLiteral(_)) => {}
                _ => members.others.push(stmt),
            }
        }
    }
}

/// `task` of `@task(3)`, `tag` of `@tag("a")`.
fn decorator_name(e: &Expr) -> &Expr {
    match e {
        Expr::Call(c) => &c.func,
        other => other,
    }
}

/// `@task` (1), `@task(3)`, `@task(weight=3)`, `@task(WEIGHT)` with a module constant: the
/// weight, or why it cannot be read (the task then counts once, and the place is noted);
/// `None` when the decorators make no task. With the decorator's place.
fn task_weight(
    decorators: &[ast::Decorator],
    consts: &Consts,
) -> Option<(Result<u32, String>, TextRange)> {
    decorators.iter().find_map(|d| {
        let name = dotted(decorator_name(&d.expression))?;
        if name != "task" && !name.ends_with(".task") {
            return None;
        }
        let Expr::Call(c) = &d.expression else {
            return Some((Ok(1), d.range));
        };
        let given = c.arguments.args.first().or_else(|| {
            c.arguments
                .keywords
                .iter()
                .find(|k| k.arg.as_ref().is_some_and(|a| a.as_str() == "weight"))
                .map(|k| &k.value)
        });
        Some((given.map_or(Ok(1), |e| weight_of(e, consts)), d.range))
    })
}

/// A task's weight written as a Python number or a module constant.
fn weight_of(e: &Expr, consts: &Consts) -> Result<u32, String> {
    let value = match e {
        Expr::Name(n) => consts.get(n.id.as_str()).cloned(),
        other => literal(other),
    };
    value
        .and_then(|v| v.as_integer())
        .and_then(|w| u32::try_from(w).ok())
        .ok_or_else(|| {
            "a task weight that is not a whole number nor a module constant (counted as 1)".into()
        })
}

/// The names of `@tag("a", "b")`.
fn tags_of(decorators: &[ast::Decorator]) -> Vec<String> {
    let mut tags = Vec::new();
    for d in decorators {
        if let Expr::Call(c) = &d.expression
            && dotted(&c.func).is_some_and(|n| n == "tag" || n.ends_with(".tag"))
        {
            for arg in c.arguments.args.iter() {
                if let Expr::StringLiteral(s) = arg {
                    tags.push(s.value.to_str().to_owned());
                }
            }
        }
    }
    tags
}

/// What a `tasks` entry or a `@task` method stands for.
enum Source<'a> {
    Function(&'a ast::StmtFunctionDef),
    Class(&'a ast::StmtClassDef),
}

impl Source<'_> {
    /// Whether both are the same function or class of the file.
    fn same(&self, other: &Source<'_>) -> bool {
        match (self, other) {
            (Source::Function(a), Source::Function(b)) => std::ptr::eq(*a, *b),
            (Source::Class(a), Source::Class(b)) => std::ptr::eq(*a, *b),
            _ => false,
        }
    }
}

/// One weighted entry of a class's tasks.
struct Entry<'a> {
    source: Source<'a>,
    weight: u32,
    tags: Vec<String>,
}
