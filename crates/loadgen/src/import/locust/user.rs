//! One user class as a user type: its attributes (`weight`, `fixed_count`, `host`,
//! `wait_time`, plain values read as `self.x`), its `on_start`, and its tasks with their
//! shares, nested `TaskSet`s flattened (share of the set × share inside it) and a
//! `SequentialTaskSet` as one task that runs its steps in order.

use std::collections::HashMap;

use ruff_python_ast::{self as ast, Expr};
use ruff_text_size::Ranged;

use super::body::{Builder, Fx};
use super::emit::{RunRef, TaskOut, UserOut};
use super::expr::{dotted, literal};
use super::{Entry, Kind, Members, Module, Source, tags_of, task_weight, weight_of};

/// A task with its share as a fraction (`num / den`) of the user's.
struct Share {
    task: TaskOut,
    num: u64,
    den: u64,
}

/// Seconds as a scenario duration: `2s`, `500ms`, or a bare number of seconds.
fn duration(secs: f64) -> String {
    if secs.fract() == 0.0 {
        format!("{secs}s")
    } else if (secs * 1000.0).fract().abs() < 1e-9 {
        format!("{}ms", (secs * 1000.0).round())
    } else {
        secs.to_string()
    }
}

fn number(e: &Expr, consts: &super::expr::Consts) -> Option<f64> {
    let value = match e {
        Expr::Name(n) => consts.get(n.id.as_str()).cloned(),
        other => literal(other),
    };
    match value? {
        toml::Value::Integer(i) => Some(i as f64),
        toml::Value::Float(f) => Some(f),
        _ => None,
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl<'a> Module<'a> {
    /// `wait_time = between(1, 3)` and its peers as the scenario's `wait`.
    fn wait(&self, e: &Expr) -> Result<toml::Value, String> {
        let Expr::Call(call) = e else {
            return Err(
                "a wait_time that is not between/constant/constant_pacing/constant_throughput"
                    .into(),
            );
        };
        let func = dotted(&call.func).unwrap_or_default();
        let args: Option<Vec<f64>> = call
            .arguments
            .args
            .iter()
            .map(|a| number(a, &self.consts))
            .collect();
        let args = args.ok_or("a wait time that is not a number")?;
        let mut table = toml::Table::new();
        match (func.rsplit('.').next().unwrap_or_default(), args.as_slice()) {
            ("between", [lo, hi]) => {
                let pair = vec![
                    toml::Value::String(duration(*lo)),
                    toml::Value::String(duration(*hi)),
                ];
                table.insert("between".into(), toml::Value::Array(pair));
            }
            ("constant", [d]) => {
                table.insert("constant".into(), toml::Value::String(duration(*d)));
            }
            ("constant_pacing", [d]) => {
                table.insert("pacing".into(), toml::Value::String(duration(*d)));
            }
            ("constant_throughput", [n]) => {
                table.insert("constant_throughput".into(), toml::Value::Float(*n));
            }
            _ => return Err(format!("a wait_time of `{func}`")),
        }
        Ok(toml::Value::Table(table))
    }

    /// The user type of an HttpUser class.
    pub(super) fn user(&self, class: &'a ast::StmtClassDef, members: &Members<'a>) -> UserOut {
        let out = UserOut {
            name: class.name.id.to_string(),
            line: super::line_column(self.source, class.range.start().to_usize()).0,
            tags: tags_of(&class.decorator_list),
            ..UserOut::default()
        };
        let mut b = Builder::new(self, out);
        self.attributes(&mut b, members);
        let methods = members.method_map();
        self.start_and_stop(&mut b, &methods);
        let entries = self.entries(&mut b, members, &methods);
        let mut shares = Vec::new();
        for entry in entries {
            self.share(&mut b, entry, &methods, 1, 1, &mut shares, 0);
        }
        let lcm = shares.iter().fold(1u64, |l, s| l / gcd(l, s.den) * s.den);
        let weights: Vec<u64> = shares.iter().map(|s| s.num * (lcm / s.den)).collect();
        let common = weights.iter().fold(0, |g, w| gcd(g, *w)).max(1);
        for (mut share, w) in shares.into_iter().zip(weights) {
            share.task.weight = u32::try_from(w / common).unwrap_or(u32::MAX);
            b.out.tasks.push(share.task);
        }
        if b.out.tasks.is_empty() {
            let note = b.note(
                class.range,
                "a user class with no task that makes a request: the scenario needs one",
            );
            b.out.notes.push(note);
        }
        b.out
    }

    fn attributes(&self, b: &mut Builder<'_>, members: &Members<'a>) {
        let mut seen = std::collections::HashSet::new();
        for (name, e, range) in members.attrs.iter().rev() {
            if !seen.insert(name.clone()) {
                continue;
            }
            let int = || literal(e).and_then(|v| v.as_integer());
            let result: Result<(), String> = match name.as_str() {
                "weight" => int()
                    .map(|w| b.out.weight = Some(w))
                    .ok_or_else(|| "a weight that is not an integer".into()),
                "fixed_count" => int()
                    .map(|n| b.out.fixed_count = Some(n))
                    .ok_or_else(|| "a fixed_count that is not an integer".into()),
                "host" => match literal(e) {
                    Some(toml::Value::String(h)) => {
                        b.out.host = Some(h);
                        Ok(())
                    }
                    _ => Err("a host that is not a string".into()),
                },
                "wait_time" => self.wait(e).map(|w| b.out.wait = Some(w)),
                "tasks" | "abstract" => Ok(()),
                _ => match literal(e) {
                    Some(v) => {
                        b.out.vars.insert(name.clone(), v);
                        Ok(())
                    }
                    None => Err("a class attribute that is not a literal".into()),
                },
            };
            if let Err(why) = result {
                let note = b.note(*range, why);
                b.out.notes.push(note);
            }
        }
        for stmt in &members.others {
            let note = b.note(stmt.range(), "a statement in the class body");
            b.out.notes.push(note);
        }
    }

    fn start_and_stop(
        &self,
        b: &mut Builder<'_>,
        methods: &HashMap<String, &'a ast::StmtFunctionDef>,
    ) {
        if let Some(f) = methods.get("on_start") {
            let mut fx = Fx::new(f, methods, true);
            b.stmts(&mut fx, &f.body);
            // A re-login that calls `self.on_start()` reuses these steps.
            b.method_runs.insert("on_start".into(), fx.run.clone());
            b.out.on_start.extend(fx.run);
            b.out.notes.append(&mut fx.notes);
        }
        if let Some(f) = methods.get("on_stop") {
            let mut fx = Fx::new(f, methods, false);
            b.stmts(&mut fx, &f.body);
            b.out.on_stop.extend(fx.run);
            b.out.notes.append(&mut fx.notes);
        }
    }

    /// The class's task entries: `tasks = [...]`/`{...}`, then its `@task` methods and `@task`
    /// classes.
    fn entries(
        &self,
        b: &mut Builder<'_>,
        members: &Members<'a>,
        methods: &HashMap<String, &'a ast::StmtFunctionDef>,
    ) -> Vec<Entry<'a>> {
        let resolve = |name: &str| -> Option<Source<'a>> {
            methods
                .get(name)
                .copied()
                .or_else(|| self.functions.get(name).copied())
                .map(Source::Function)
                .or_else(|| {
                    members
                        .classes
                        .get(name)
                        .or_else(|| self.classes.get(name))
                        .map(|c| Source::Class(c))
                })
        };
        let mut entries: Vec<Entry<'a>> = Vec::new();
        if let Some((tasks, range)) = members.attr("tasks") {
            let consts = &self.consts;
            let items: Vec<(&Expr, Result<u32, String>)> = match tasks {
                Expr::List(l) => l.elts.iter().map(|e| (e, Ok(1))).collect(),
                Expr::Tuple(t) => t.elts.iter().map(|e| (e, Ok(1))).collect(),
                Expr::Dict(d) => d
                    .iter()
                    .filter_map(|i| Some((i.key.as_ref()?, weight_of(&i.value, consts))))
                    .collect(),
                _ => Vec::new(),
            };
            for (e, weight) in items {
                let weight = b.weight_or_note(e.range(), weight);
                let name = dotted(e).unwrap_or_default();
                match resolve(name.rsplit('.').next().unwrap_or_default()) {
                    // A task listed twice is one task of twice the weight.
                    Some(source) => match entries.iter_mut().find(|e| e.source.same(&source)) {
                        Some(listed) => listed.weight += weight,
                        None => entries.push(Entry {
                            source,
                            weight,
                            tags: Vec::new(),
                        }),
                    },
                    None => {
                        let note = b.note(
                            range,
                            format!(
                                "the task `{name}`, which is not a function or class of this file"
                            ),
                        );
                        b.out.notes.push(note);
                    }
                }
            }
        }
        // Locust's metaclass adds the @task methods to a `tasks` list.
        for m in &members.methods {
            if let Some((weight, at)) = task_weight(&m.decorator_list, &self.consts) {
                let weight = b.weight_or_note(at, weight);
                entries.push(Entry {
                    source: Source::Function(m),
                    weight,
                    tags: tags_of(&m.decorator_list),
                });
            }
        }
        // In the file's order, so that one file always gives one scenario.
        let mut nested: Vec<&&ast::StmtClassDef> = members.classes.values().collect();
        nested.sort_by_key(|c| c.range.start());
        for c in nested {
            if let Some((weight, at)) = task_weight(&c.decorator_list, &self.consts) {
                let weight = b.weight_or_note(at, weight);
                entries.push(Entry {
                    source: Source::Class(c),
                    weight,
                    tags: tags_of(&c.decorator_list),
                });
            }
        }
        entries
    }

    /// Adds an entry's tasks with their share: `num / den` of the user's tasks.
    #[allow(clippy::too_many_arguments)]
    fn share(
        &self,
        b: &mut Builder<'_>,
        entry: Entry<'a>,
        methods: &HashMap<String, &'a ast::StmtFunctionDef>,
        num: u64,
        den: u64,
        out: &mut Vec<Share>,
        depth: usize,
    ) {
        let num = num * u64::from(entry.weight);
        match entry.source {
            Source::Function(f) => {
                let mut fx = Fx::new(f, methods, false);
                b.stmts(&mut fx, &f.body);
                let mut task = TaskOut {
                    from: format!(
                        "task {} (line {})",
                        f.name.id,
                        super::line_column(self.source, f.range.start().to_usize()).0
                    ),
                    tags: entry.tags,
                    run: fx.run,
                    notes: fx.notes,
                    ..TaskOut::default()
                };
                if task.run.is_empty() {
                    let note = b.note(f.range, "a task that makes no request");
                    task.notes.push(note);
                    b.out.notes.append(&mut task.notes);
                    return;
                }
                out.push(Share { task, num, den });
            }
            Source::Class(c) => self.task_set(b, c, entry.tags, num, den, out, depth),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn task_set(
        &self,
        b: &mut Builder<'_>,
        class: &'a ast::StmtClassDef,
        tags: Vec<String>,
        num: u64,
        den: u64,
        out: &mut Vec<Share>,
        depth: usize,
    ) {
        let kind = self.kind(class);
        if depth > 5 || kind.is_none() || kind == Some(Kind::User) {
            let note = b.note(
                class.range,
                "a task class that is not a TaskSet or SequentialTaskSet",
            );
            b.out.notes.push(note);
            return;
        }
        let members = self.members(class);
        let methods = members.method_map();
        if let Some(f) = methods.get("on_start") {
            // Locust runs it when the user enters the set: once, when the set is its only task.
            let mut fx = Fx::new(f, &methods, true);
            b.stmts(&mut fx, &f.body);
            b.out.on_start.extend(fx.run);
            b.out.notes.append(&mut fx.notes);
        }
        if let Some(f) = methods.get("on_stop") {
            // Locust runs it when the user leaves the set, and when it stops inside it (before
            // the user's own): a flattened set is never left, so at the user's stop, first.
            let mut fx = Fx::new(f, &methods, false);
            b.stmts(&mut fx, &f.body);
            if !b.out.sets_on_stop.is_empty() {
                let note = b.note(
                    f.range,
                    "on_stop of a second TaskSet: every set's on_stop runs at each stop, where \
                     Locust runs only that of the set the user is in",
                );
                b.out.notes.push(note);
            }
            b.out.sets_on_stop.extend(fx.run);
            b.out.notes.append(&mut fx.notes);
        }
        let entries = self.entries(b, &members, &methods);
        if kind == Some(Kind::Sequential) {
            let mut inner = Vec::new();
            for e in entries {
                // A sequence runs an entry of weight N N times in a row (bounded: a weight is
                // a share, not a loop count, elsewhere).
                let repeat = e.weight.clamp(1, 100);
                let before = inner.len();
                self.share(
                    b,
                    Entry { weight: 1, ..e },
                    &methods,
                    1,
                    1,
                    &mut inner,
                    depth + 1,
                );
                // Only what this entry added repeats (an entry that made no request added
                // nothing; a nested class may add several shares).
                let once: Vec<RunRef> = inner[before..]
                    .iter()
                    .flat_map(|s| s.task.run.iter().cloned())
                    .collect();
                if let Some(last) = inner[before..].last_mut() {
                    for _ in 1..repeat {
                        last.task.run.extend(once.iter().cloned());
                    }
                }
            }
            let mut run: Vec<RunRef> = Vec::new();
            let mut notes = Vec::new();
            for s in inner {
                run.extend(s.task.run);
                notes.extend(s.task.notes);
            }
            if !run.is_empty() {
                let task = TaskOut {
                    from: format!(
                        "SequentialTaskSet {}: its tasks in order, one after the other",
                        class.name.id
                    ),
                    tags,
                    run,
                    notes,
                    ..TaskOut::default()
                };
                out.push(Share { task, num, den });
            }
            return;
        }
        let total: u64 = entries
            .iter()
            .map(|e| u64::from(e.weight))
            .sum::<u64>()
            .max(1);
        for mut e in entries {
            e.tags.extend(tags.iter().cloned());
            self.share(b, e, &methods, num, den * total, out, depth + 1);
        }
    }
}
