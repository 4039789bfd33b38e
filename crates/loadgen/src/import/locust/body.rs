//! A task's or `on_start`'s Python statements as steps: `self.client.get(...)` and its peers
//! become requests, `response.json()["a"]["b"]` into `self.x` an extraction, `if
//! response.status_code == 401: self.login()` an `on_status`, `catch_response=True` with
//! `.success()`/`.failure()` an `expect`, `self.client.headers.update(...)` user headers, and
//! calls of the class's own methods are followed. What is left is noted, with its lines.

use std::collections::{BTreeMap, HashMap};

use ruff_python_ast::{self as ast, CmpOp, Expr, Stmt};
use ruff_text_size::{Ranged, TextRange};

use super::Module;
use super::emit::{RunRef, UserOut};
use super::expr::{Scope, dotted, self_attr};
use crate::import::Untranslated;

/// What a user type's translation keeps across its functions.
pub struct Builder<'m> {
    pub module: &'m Module<'m>,
    pub out: UserOut,
    /// `self.x = {...}` dictionaries, for `headers=self.x`.
    pub dicts: HashMap<String, toml::Table>,
    /// Runs of the methods already translated (a `login` called from two places is one step).
    pub method_runs: HashMap<String, Vec<RunRef>>,
    depth: usize,
}

/// One function being translated.
pub struct Fx<'a> {
    pub self_name: String,
    /// The name steps are keyed by.
    pub func: String,
    /// The class's methods, for `self.m()`.
    pub methods: &'a HashMap<String, &'a ast::StmtFunctionDef>,
    /// Whether values set on `self` are the user's variables (in `on_start`).
    pub at_start: bool,
    pub locals: HashMap<String, String>,
    /// Local names of responses: the step they answer.
    pub responses: HashMap<String, usize>,
    pub run: Vec<RunRef>,
    pub notes: Vec<Untranslated>,
}

impl<'a> Fx<'a> {
    pub fn new(
        func: &ast::StmtFunctionDef,
        methods: &'a HashMap<String, &'a ast::StmtFunctionDef>,
        at_start: bool,
    ) -> Self {
        let self_name = func
            .parameters
            .args
            .first()
            .or(func.parameters.posonlyargs.first())
            .map_or_else(|| "self".to_owned(), |p| p.parameter.name.id.to_string());
        Self {
            self_name,
            func: func.name.id.to_string(),
            methods,
            at_start,
            locals: HashMap::new(),
            responses: HashMap::new(),
            run: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// The HTTP method of `self.client.get(...)`, `self.client.request("GET", ...)`.
fn client_method(call: &ast::ExprCall, self_name: &str) -> Option<String> {
    let Expr::Attribute(a) = call.func.as_ref() else {
        return None;
    };
    if self_attr(&a.value, self_name) != Some("client") {
        return None;
    }
    let method = a.attr.id.as_str();
    match method {
        "get" | "post" | "put" | "patch" | "delete" | "head" | "options" => {
            Some(method.to_ascii_uppercase())
        }
        "request" => match call.arguments.find_argument_value("method", 0) {
            Some(Expr::StringLiteral(s)) => Some(s.value.to_str().to_ascii_uppercase()),
            _ => Some(String::new()),
        },
        _ => None,
    }
}

/// `R.json()` followed by `["a"]["b"]` or `.get("a")`: (R, field path), R being the response
/// expression.
fn json_path(e: &Expr) -> Option<(&Expr, Vec<String>)> {
    match e {
        Expr::Subscript(s) => {
            let (inner, mut path) = json_path(&s.value)?;
            let Expr::StringLiteral(k) = s.slice.as_ref() else {
                return None;
            };
            path.push(k.value.to_str().to_owned());
            Some((inner, path))
        }
        Expr::Call(c) => {
            let Expr::Attribute(a) = c.func.as_ref() else {
                return None;
            };
            match (a.attr.id.as_str(), c.arguments.args.as_ref()) {
                ("json", []) => Some((a.value.as_ref(), Vec::new())),
                ("get", [Expr::StringLiteral(k)]) => {
                    let (inner, mut path) = json_path(&a.value)?;
                    path.push(k.value.to_str().to_owned());
                    Some((inner, path))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// `R.status_code == N`, `!= N`, `in (N, M)`: (R's name, equal?, codes).
fn status_test(test: &Expr) -> Option<(String, bool, Vec<u16>)> {
    let Expr::Compare(c) = test else {
        return None;
    };
    let (Expr::Attribute(a), [op], [right]) =
        (c.left.as_ref(), c.ops.as_ref(), c.comparators.as_ref())
    else {
        return None;
    };
    let Expr::Name(r) = a.value.as_ref() else {
        return None;
    };
    if a.attr.id.as_str() != "status_code" {
        return None;
    }
    let code = |e: &Expr| match e {
        Expr::NumberLiteral(n) => n.value.as_int().and_then(|i| i.as_u16()),
        _ => None,
    };
    let codes: Option<Vec<u16>> = match right {
        Expr::Tuple(t) => t.elts.iter().map(code).collect(),
        Expr::List(l) => l.elts.iter().map(code).collect(),
        Expr::Set(s) => s.elts.iter().map(code).collect(),
        one => code(one).map(|c| vec![c]),
    };
    let eq = match op {
        CmpOp::Eq | CmpOp::In => true,
        CmpOp::NotEq | CmpOp::NotIn => false,
        _ => return None,
    };
    Some((r.id.to_string(), eq, codes?))
}

/// Whether `stmts` is one call of `R.success()` or `R.failure(...)`: `Some(true)` success.
fn verdict(stmts: &[Stmt], response: &str) -> Option<bool> {
    let [Stmt::Expr(e)] = stmts else {
        return None;
    };
    let Expr::Call(c) = e.value.as_ref() else {
        return None;
    };
    let Expr::Attribute(a) = c.func.as_ref() else {
        return None;
    };
    if !matches!(a.value.as_ref(), Expr::Name(n) if n.id.as_str() == response) {
        return None;
    }
    match a.attr.id.as_str() {
        "success" => Some(true),
        "failure" => Some(false),
        _ => None,
    }
}

/// Calls that have nothing to say to a load test.
const QUIET: [&str; 8] = [
    "print",
    "logging.info",
    "logging.debug",
    "logging.warning",
    "logger.info",
    "logger.debug",
    "logger.warning",
    "log.info",
];

impl<'m> Builder<'m> {
    pub fn new(module: &'m Module<'m>, out: UserOut) -> Self {
        Self {
            module,
            out,
            dicts: HashMap::new(),
            method_runs: HashMap::new(),
            depth: 0,
        }
    }

    /// A task's weight, or 1 with a note saying why it could not be read.
    pub fn weight_or_note(&mut self, range: TextRange, weight: Result<u32, String>) -> u32 {
        weight.unwrap_or_else(|why| {
            let note = self.note(range, why);
            self.out.notes.push(note);
            1
        })
    }

    pub fn note(&self, range: TextRange, why: impl Into<String>) -> Untranslated {
        self.module.note(range, why)
    }

    fn scope<'s>(
        &'s mut self,
        fx: &'s Fx<'_>,
        lists: &'s mut BTreeMap<String, toml::Value>,
    ) -> Scope<'s> {
        Scope {
            consts: &self.module.consts,
            self_name: &fx.self_name,
            locals: &fx.locals,
            lists,
        }
    }

    /// Runs `f` with a scope over `fx`; list variables it needs become the user's `vars`.
    pub fn with_scope<T>(&mut self, fx: &Fx<'_>, f: impl FnOnce(&mut Scope<'_>) -> T) -> T {
        let mut lists = BTreeMap::new();
        let result = f(&mut self.scope(fx, &mut lists));
        self.out.vars.extend(lists);
        result
    }

    /// Every statement of a body, in order.
    pub fn stmts(&mut self, fx: &mut Fx<'_>, body: &[Stmt]) {
        for stmt in body {
            self.stmt(fx, stmt);
        }
    }

    fn stmt(&mut self, fx: &mut Fx<'_>, stmt: &Stmt) {
        match stmt {
            Stmt::Pass(_) => {}
            Stmt::Expr(e) => self.expr_stmt(fx, stmt, &e.value),
            Stmt::Assign(a) if a.targets.len() == 1 => {
                self.assign(fx, stmt, &a.targets[0], &a.value)
            }
            Stmt::AnnAssign(a) if a.value.is_some() => {
                if let Some(value) = &a.value {
                    self.assign(fx, stmt, &a.target, value);
                }
            }
            Stmt::With(w) => self.with(fx, w),
            Stmt::If(i) => self.if_stmt(fx, i),
            Stmt::For(f) => self.for_range(fx, f),
            _ => fx
                .notes
                .push(self.note(stmt.range(), "a statement loadgen's scenarios cannot say")),
        }
    }

    fn expr_stmt(&mut self, fx: &mut Fx<'_>, stmt: &Stmt, e: &Expr) {
        let Expr::Call(call) = e else {
            if !matches!(e, Expr::StringLiteral(_)) {
                fx.notes
                    .push(self.note(stmt.range(), "an expression with no request"));
            }
            return;
        };
        if client_method(call, &fx.self_name).is_some() {
            self.request(fx, call, stmt.range());
            return;
        }
        let func = dotted(&call.func).unwrap_or_default();
        let own = format!("{}.", fx.self_name);
        if func == format!("{}.client.headers.update", fx.self_name) {
            self.headers_update(fx, stmt, call);
        } else if let Some(method) = func.strip_prefix(&own).filter(|m| !m.contains('.')) {
            self.call_method(fx, stmt, method);
        } else if QUIET.contains(&func.as_str()) {
        } else if func == "time.sleep" || func == "sleep" || func == "gevent.sleep" {
            fx.notes.push(self.note(
                stmt.range(),
                "a sleep inside a task: the scenario waits only between tasks (`wait`)",
            ));
        } else {
            fx.notes
                .push(self.note(stmt.range(), format!("a call of `{func}` with no request")));
        }
    }

    /// `self.m()`: the method's steps, translated once.
    fn call_method(&mut self, fx: &mut Fx<'_>, stmt: &Stmt, method: &str) {
        if matches!(method, "interrupt" | "wait" | "stop") {
            return;
        }
        if let Some(run) = self.method_run(fx, stmt, method) {
            fx.run.extend(run);
        }
    }

    /// The steps of `self.method()`, translated on first use.
    pub fn method_run(
        &mut self,
        fx: &mut Fx<'_>,
        stmt: &Stmt,
        method: &str,
    ) -> Option<Vec<RunRef>> {
        if let Some(run) = self.method_runs.get(method) {
            return Some(run.clone());
        }
        let Some(def) = fx.methods.get(method).copied() else {
            fx.notes.push(self.note(
                stmt.range(),
                format!("a call of `self.{method}`, which is not a method of this class"),
            ));
            return None;
        };
        if self.depth > 8 {
            fx.notes
                .push(self.note(stmt.range(), "methods that call each other too deep"));
            return None;
        }
        self.depth += 1;
        let mut inner = Fx::new(def, fx.methods, fx.at_start);
        inner.locals = fx.locals.clone();
        self.stmts(&mut inner, &def.body);
        self.depth -= 1;
        fx.notes.append(&mut inner.notes);
        self.method_runs
            .insert(method.to_owned(), inner.run.clone());
        Some(inner.run)
    }

    fn headers_update(&mut self, fx: &mut Fx<'_>, stmt: &Stmt, call: &ast::ExprCall) {
        let value = match call.arguments.args.first() {
            Some(arg) => self.with_scope(fx, |s| s.value(arg)),
            None => Err("no argument".into()),
        };
        match value {
            Ok(toml::Value::Table(t)) => {
                for (k, v) in t {
                    match v {
                        toml::Value::String(s) => {
                            self.out.headers.insert(k, s);
                        }
                        other => {
                            self.out.headers.insert(k, other.to_string());
                        }
                    }
                }
            }
            Ok(_) => fx
                .notes
                .push(self.note(stmt.range(), "headers.update with no dictionary")),
            Err(why) => fx.notes.push(self.note(stmt.range(), why)),
        }
    }

    fn assign(&mut self, fx: &mut Fx<'_>, stmt: &Stmt, target: &Expr, value: &Expr) {
        if let Expr::Call(call) = value
            && client_method(call, &fx.self_name).is_some()
        {
            let index = self.request(fx, call, stmt.range());
            if let (Expr::Name(n), Some(i)) = (target, index) {
                fx.responses.insert(n.id.to_string(), i);
            }
            return;
        }
        // self.client.headers["X"] = v
        if let Expr::Subscript(s) = target
            && dotted(&s.value).as_deref() == Some(&format!("{}.client.headers", fx.self_name))
            && let Expr::StringLiteral(k) = s.slice.as_ref()
        {
            match self.with_scope(fx, |sc| sc.template(value)) {
                Ok(v) => {
                    self.out.headers.insert(k.value.to_str().to_owned(), v);
                }
                Err(why) => fx.notes.push(self.note(stmt.range(), why)),
            }
            return;
        }
        let (name, local_key) = match (target, self_attr(target, &fx.self_name)) {
            (_, Some(attr)) => (attr.to_owned(), format!("self.{attr}")),
            (Expr::Name(n), None) => (n.id.to_string(), n.id.to_string()),
            _ => {
                fx.notes.push(self.note(
                    stmt.range(),
                    "an assignment to something other than a name or self.x",
                ));
                return;
            }
        };
        if let Some((response, path)) = json_path(value) {
            self.extraction(fx, stmt, response, path, &name, &local_key);
            return;
        }
        let value = match self.with_scope(fx, |s| s.value(value)) {
            Ok(v) => v,
            Err(why) => {
                fx.notes.push(self.note(stmt.range(), why));
                return;
            }
        };
        if let toml::Value::Table(t) = value {
            // A dictionary of headers or a body, for the requests that name it.
            self.dicts.insert(local_key, t);
            return;
        }
        if fx.at_start && local_key.starts_with("self.") {
            // A user variable, set when the user starts, as on_start sets it.
            self.out.vars.insert(name, value);
        } else if let toml::Value::String(s) = value {
            fx.locals.insert(local_key, s);
        } else {
            fx.locals.insert(local_key, super::emit_text(&value));
        }
    }

    /// `x = R.json()["a"]["b"]`: an `extract` on R's step, and `${x}` from here on.
    fn extraction(
        &mut self,
        fx: &mut Fx<'_>,
        stmt: &Stmt,
        response: &Expr,
        path: Vec<String>,
        name: &str,
        local_key: &str,
    ) {
        let step = match response {
            Expr::Name(n) => fx.responses.get(n.id.as_str()).copied(),
            Expr::Call(c) if client_method(c, &fx.self_name).is_some() => {
                self.request(fx, c, stmt.range())
            }
            _ => None,
        };
        match step {
            Some(i) if !path.is_empty() => {
                self.out.steps[i]
                    .extract
                    .insert(name.to_owned(), path.join("."));
                fx.locals
                    .insert(local_key.to_owned(), format!("${{{name}}}"));
            }
            Some(_) => fx.notes.push(self.note(
                stmt.range(),
                "the whole JSON answer kept: loadgen extracts fields (`[\"a\"][\"b\"]`)",
            )),
            None => fx.notes.push(self.note(
                stmt.range(),
                "a JSON field of an answer this function did not request",
            )),
        }
    }

    fn with(&mut self, fx: &mut Fx<'_>, w: &ast::StmtWith) {
        let [item] = w.items.as_slice() else {
            fx.notes
                .push(self.note(w.range, "a `with` of several items"));
            return;
        };
        let Expr::Call(call) = &item.context_expr else {
            fx.notes
                .push(self.note(w.range, "a `with` that is not a request"));
            return;
        };
        if client_method(call, &fx.self_name).is_none() {
            fx.notes
                .push(self.note(w.range, "a `with` that is not a request"));
            return;
        }
        let head = TextRange::new(w.range.start(), item.range.end());
        let index = self.request(fx, call, head);
        let (Some(index), Some(Expr::Name(r))) = (index, item.optional_vars.as_deref()) else {
            self.stmts(fx, &w.body);
            return;
        };
        let response = r.id.to_string();
        fx.responses.insert(response.clone(), index);
        for stmt in &w.body {
            if verdict(std::slice::from_ref(stmt), &response) == Some(true) {
                // Every answer is a success, whatever its status.
                self.out.steps[index].expect = Some((100..600).collect());
            } else if verdict(std::slice::from_ref(stmt), &response) == Some(false) {
                let note = self.note(
                    stmt.range(),
                    "an unconditional failure: the request is counted by its status",
                );
                self.out.steps[index].notes.push(note);
            } else {
                self.stmt(fx, stmt);
            }
        }
    }

    fn if_stmt(&mut self, fx: &mut Fx<'_>, i: &ast::StmtIf) {
        let Some((response, eq, codes)) = status_test(&i.test) else {
            fx.notes.push(self.note(i.range, "a condition loadgen's scenarios cannot say (only `response.status_code` tests are translated)"));
            return;
        };
        let Some(&index) = fx.responses.get(&response) else {
            fx.notes.push(self.note(
                i.range,
                "a status test of an answer this function did not request",
            ));
            return;
        };
        let otherwise = match i.elif_else_clauses.as_slice() {
            [] => None,
            [e] if e.test.is_none() => Some(e.body.as_slice()),
            _ => {
                fx.notes
                    .push(self.note(i.range, "elif branches on the status"));
                return;
            }
        };
        let body_verdict = verdict(&i.body, &response);
        let else_verdict = otherwise.and_then(|o| verdict(o, &response));
        let step = &mut self.out.steps[index];
        match (eq, body_verdict, otherwise, else_verdict) {
            // if == N: success() else: failure()   /   if != N: failure() [else: success()]
            (true, Some(true), Some(_), Some(false))
            | (false, Some(false), _, None | Some(true)) => {
                step.expect = Some(codes);
            }
            // if == N: success(): N is fine too.
            (true, Some(true), None, _) => {
                let mut expect: Vec<u16> = (200..=208).collect();
                expect.extend(codes);
                step.expect = Some(expect);
            }
            // if == N: failure(): statuses of 400 and above already fail.
            (true, Some(false), None, _) if codes.iter().all(|c| *c >= 400) => {}
            (true, None, None, _) if eq => self.on_status(fx, i, index, &codes),
            _ => fx
                .notes
                .push(self.note(i.range, "a status check this importer does not know")),
        }
    }

    /// `if r.status_code == 401: self.login()`: on that status, run the login step (the
    /// scenario then retries the request once).
    fn on_status(&mut self, fx: &mut Fx<'_>, i: &ast::StmtIf, index: usize, codes: &[u16]) {
        let mut inner = Fx {
            self_name: fx.self_name.clone(),
            func: fx.func.clone(),
            methods: fx.methods,
            at_start: false,
            locals: fx.locals.clone(),
            responses: HashMap::new(),
            run: Vec::new(),
            notes: Vec::new(),
        };
        self.stmts(&mut inner, &i.body);
        fx.notes.append(&mut inner.notes);
        // A handler of several requests (`self.on_start()`): the one that extracts a value
        // (the login), as on_status runs one step before it retries.
        let extracting: Vec<&RunRef> = inner
            .run
            .iter()
            .filter(|r| {
                self.out
                    .steps
                    .iter()
                    .any(|s| s.key == r.step && !s.extract.is_empty())
            })
            .collect();
        // Of several, the one whose value the user's headers carry (a token): what a 401
        // needs anew.
        let extracting = if extracting.len() > 1 {
            let credential: Vec<&RunRef> = extracting
                .iter()
                .copied()
                .filter(|r| self.sets_a_header_value(&r.step))
                .collect();
            if credential.len() == 1 {
                credential
            } else {
                extracting
            }
        } else {
            extracting
        };
        let target = match (inner.run.as_slice(), extracting.as_slice()) {
            ([one], _) => one.step.clone(),
            (_, [login]) => {
                let why = format!(
                    "a status handler of {} requests: on {} only `{}` runs (it sets what the \
                     others need), then the request is retried once",
                    inner.run.len(),
                    codes
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    login.step
                );
                fx.notes.push(self.note(i.range, why));
                login.step.clone()
            }
            _ => {
                fx.notes
                    .push(self.note(i.range, "a status handler that is not one request"));
                return;
            }
        };
        for code in codes {
            self.out.steps[index]
                .on_status
                .insert(code.to_string(), target.clone());
        }
    }

    /// Whether step `key` extracts a variable that one of the user's headers uses.
    fn sets_a_header_value(&self, key: &str) -> bool {
        self.out
            .steps
            .iter()
            .filter(|s| s.key == key)
            .flat_map(|s| s.extract.keys())
            .any(|var| {
                let used = format!("${{{var}}}");
                self.out.headers.values().any(|h| h.contains(&used))
            })
    }

    /// `for _ in range(N):` over requests: each step repeated N times.
    fn for_range(&mut self, fx: &mut Fx<'_>, f: &ast::StmtFor) {
        let count = match f.iter.as_ref() {
            Expr::Call(c) if dotted(&c.func).as_deref() == Some("range") => {
                match c.arguments.args.as_ref() {
                    [Expr::NumberLiteral(n)] => n.value.as_int().and_then(|i| i.as_u32()),
                    _ => None,
                }
            }
            _ => None,
        };
        let Some(count) = count.filter(|n| *n >= 1 && f.orelse.is_empty()) else {
            fx.notes
                .push(self.note(f.range, "a loop other than `for _ in range(N)`"));
            return;
        };
        // `for i in range(N)` with `i` used: N copies, `i` a literal in each.
        if let Expr::Name(var) = f.target.as_ref()
            && var.id.as_str() != "_"
            && count <= 20
        {
            for i in 0..count {
                fx.locals.insert(var.id.to_string(), i.to_string());
                self.stmts(fx, &f.body);
            }
            fx.locals.remove(var.id.as_str());
            return;
        }
        let start = fx.run.len();
        self.stmts(fx, &f.body);
        let body: Vec<RunRef> = fx.run.drain(start..).collect();
        if let [one] = body.as_slice() {
            fx.run.push(RunRef {
                step: one.step.clone(),
                repeat: one.repeat * count,
            });
        } else {
            for _ in 0..count {
                fx.run.extend(body.iter().cloned());
            }
        }
    }
}
