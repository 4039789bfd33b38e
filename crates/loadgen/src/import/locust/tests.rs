//! One test per construct: a small locustfile in, the TOML (or the note) out, and every
//! output through the scenario checker.

use super::import;

fn toml_of(source: &str) -> String {
    let imported = import(source, "locustfile.py").unwrap();
    let fixtures = tempfile::tempdir().unwrap();
    if let Err(e) = imported.check("imported.toml", fixtures.path()) {
        panic!("{e}\n{}", imported.toml);
    }
    imported.toml
}

#[test]
fn a_user_with_tasks_and_a_wait() {
    let toml = toml_of(
        "from locust import HttpUser, task, between\n\
         class Web(HttpUser):\n    wait_time = between(1, 2.5)\n    weight = 3\n\n    @task(2)\n    def index(self):\n        self.client.get(\"/\")\n\n    @task\n    def about(self):\n        self.client.get(\"/about/\", name=\"about\")\n",
    );
    assert!(
        toml.contains("wait = { between = [\"1s\", \"2500ms\"] }"),
        "{toml}"
    );
    assert!(toml.contains("weight = 3"), "{toml}");
    assert!(toml.contains("weight = 2\nrun = [\"index\"]"), "{toml}");
}

fn imported(source: &str) -> crate::import::Imported {
    import(source, "locustfile.py").unwrap()
}

#[test]
fn tasks_lists_and_dicts_of_module_functions_keep_their_weights() {
    let toml = toml_of(
        "def a(l):\n    l.client.get('/a')\n\ndef b(user):\n    user.client.get('/b')\n\n\
         class U(HttpUser):\n    tasks = {a: 3, b: 1}\n\n\
         class V(HttpUser):\n    tasks = [a, b, b]\n\n    @task(4)\n    def c(self):\n        self.client.get('/c')\n",
    );
    assert!(toml.contains("weight = 3\nrun = [\"a\"]"), "{toml}");
    assert!(toml.contains("path = \"/b\""), "{toml}");
    // As Locust's metaclass: the @task method beside the list.
    assert!(toml.contains("weight = 4\nrun = [\"c\"]"), "{toml}");
    assert!(
        toml.contains("weight = 2\nrun = [\"b\"]"),
        "a task listed twice: {toml}"
    );
    assert_eq!(toml.matches("[[users.tasks]]").count(), 5, "{toml}");
}

#[test]
fn weights_given_by_keyword_or_module_constant_are_kept_and_others_noted() {
    let out = imported(
        "HEAVY = 5\n\ndef a(l):\n    l.client.get('/a')\n\n\
         class U(HttpUser):\n    tasks = {a: HEAVY}\n\n    @task(weight=3)\n    def k(self):\n\
         \x20       self.client.get('/k')\n\n    @task(HEAVY)\n    def c(self):\n\
         \x20       self.client.get('/c')\n\n    @task(len('ab'))\n    def d(self):\n\
         \x20       self.client.get('/d')\n",
    );
    let toml = &out.toml;
    assert!(toml.contains("weight = 5\nrun = [\"a\"]"), "{toml}");
    assert!(toml.contains("weight = 3\nrun = [\"k\"]"), "{toml}");
    assert!(toml.contains("weight = 5\nrun = [\"c\"]"), "{toml}");
    assert!(toml.contains("weight = 1\nrun = [\"d\"]"), "{toml}");
    let lines: Vec<usize> = out.untranslated.iter().map(|u| u.line).collect();
    assert_eq!(
        lines,
        [17],
        "only the weight no one can read: {:?}",
        out.untranslated
    );
}

#[test]
fn python_text_holding_a_template_opening_stays_text() {
    let toml = toml_of(
        "class U(HttpUser):\n    price = 5\n    id = 3\n\n    @task\n    def t(self):\n\
         \x20       self.client.post('/a', json={'sh': 'echo ${HOME}', 'p': f'${self.price}'})\n\
         \x20       self.client.get('/b/%s/${{x}}' % self.id)\n\
         \x20       self.client.post('/c/a$' + '{x}', json={'${k}': 1}, params={'q': 'a&b ${c}'})\n",
    );
    // Joined, the pieces stay text; a JSON key is no template; a query value is encoded.
    assert!(
        toml.contains("path = \"/c/a${$}{x}?q=a%26b+%24%7Bc%7D\""),
        "{toml}"
    );
    assert!(toml.contains("\"${k}\" = 1"), "{toml}");
    assert!(toml.contains("sh = \"echo ${$}{HOME}\""), "{toml}");
    // A dollar sign before a value is a dollar sign, then the value.
    assert!(toml.contains("p = \"${$}${price}\""), "{toml}");
    assert!(toml.contains("path = \"/b/${id}/${$}{{x}}\""), "{toml}");
}

#[test]
fn a_nested_task_set_is_flattened_with_its_shares() {
    // The set holds 2/3 of the user's picks, split 3:1 inside; the plain task 1/3.
    let toml = toml_of(
        "class Set(TaskSet):\n    @task(3)\n    def read(self):\n        self.client.get('/r')\n\
         \n    @task\n    def write(self):\n        self.client.post('/w')\n        self.interrupt()\n\n\
         def other(l):\n    l.client.get('/o')\n\n\
         class U(HttpUser):\n    tasks = {Set: 2, other: 1}\n",
    );
    assert!(toml.contains("weight = 3\nrun = [\"read\"]"), "{toml}");
    assert!(toml.contains("weight = 1\nrun = [\"write\"]"), "{toml}");
    assert!(toml.contains("weight = 2\nrun = [\"other\"]"), "{toml}");
}

#[test]
fn a_sequential_task_set_is_one_task_in_order() {
    let toml = toml_of(
        "class Flow(SequentialTaskSet):\n    @task\n    def one(self):\n        self.client.get('/1')\n\
         \n    @task\n    def two(self):\n        self.client.get('/2')\n\n\
         class U(HttpUser):\n    tasks = [Flow]\n",
    );
    assert!(toml.contains("run = [\"one\", \"two\"]"), "{toml}");
}

#[test]
fn logins_extract_tokens_set_headers_and_answer_401() {
    let toml = toml_of(
        "class U(HttpUser):\n    def on_start(self):\n        self.login()\n\n\
         \x20   def login(self):\n        r = self.client.post('/login', json={'u': 'a'})\n\
         \x20       self.token = r.json()['auth']['token']\n\
         \x20       self.client.headers.update({'Authorization': f'Bearer {self.token}'})\n\n\
         \x20   @task\n    def me(self):\n        r = self.client.get('/me')\n\
         \x20       if r.status_code == 401:\n            self.login()\n",
    );
    assert!(toml.contains("on_start = [\"login\"]"), "{toml}");
    assert!(
        toml.contains("extract = { token = \"auth.token\" }"),
        "{toml}"
    );
    assert!(
        toml.contains("headers = { Authorization = \"Bearer ${token}\" }"),
        "{toml}"
    );
    assert!(toml.contains("on_status = { 401 = \"login\" }"), "{toml}");
}

#[test]
fn catch_response_status_checks_become_expect() {
    let toml = toml_of(
        "class U(HttpUser):\n    @task\n    def t(self):\n\
         \x20       with self.client.get('/a', catch_response=True) as r:\n\
         \x20           if r.status_code == 201:\n                r.success()\n\
         \x20           else:\n                r.failure('no')\n",
    );
    assert!(toml.contains("expect = [201]"), "{toml}");
}

#[test]
fn values_become_templates() {
    let toml = toml_of(
        "import random, uuid\nBASE = '/api'\nNAMES = ['a', 'b']\n\
         class U(HttpUser):\n    @task\n    def t(self):\n\
         \x20       n = random.randint(1, 9)\n\
         \x20       self.client.get(f'{BASE}/x/{n}', name='/x')\n\
         \x20       self.client.get('/y/%s/%d' % (random.choice(NAMES), 3))\n\
         \x20       self.client.post('/z/{}'.format(BASE), json={'id': str(uuid.uuid4())})\n",
    );
    assert!(toml.contains("path = \"/api/x/${randint 1 9}\""), "{toml}");
    assert!(toml.contains("path = \"/y/${pick NAMES}/3\""), "{toml}");
    assert!(toml.contains("vars = { NAMES = [\"a\", \"b\"] }"), "{toml}");
    assert!(toml.contains("json = { id = \"${uuid}\" }"), "{toml}");
}

#[test]
fn requests_keep_their_arguments() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.png"), b"png").unwrap();
    let source = "class U(FastHttpUser):\n    wait_time = constant_pacing(2)\n    fixed_count = 2\n\
         \x20   @tag('slow')\n    @task\n    def t(self):\n\
         \x20       self.client.get('/s', params={'q': 'a b'}, allow_redirects=False, timeout=3)\n\
         \x20       self.client.request('PATCH', '/p', data={'k': 'v'}, headers={'X-A': '1'})\n\
         \x20       self.client.post('/u', files={'f': open('a.png', 'rb')})\n";
    let out = imported(source);
    out.check("t", dir.path()).unwrap();
    let toml = out.toml;
    for wanted in [
        "wait = { pacing = \"2s\" }",
        "fixed_count = 2",
        "tags = [\"slow\"]",
        "path = \"/s?q=a+b\"",
        "follow_redirects = false",
        "timeout = \"3s\"",
        "method = \"PATCH\"",
        "form = { k = \"v\" }",
        "headers = { X-A = \"1\" }",
        "multipart = { f = { content_type = \"image/png\", fixture = \"a.png\" } }",
    ] {
        assert!(toml.contains(wanted), "{wanted} in:\n{toml}");
    }
}

#[test]
fn what_is_left_is_noted_with_its_lines() {
    let out = imported(
        "class U(HttpUser):\n    @task\n    def t(self):\n        self.client.get('/a')\n\
         \x20       while True:\n            break\n\n    def on_stop(self):\n        self.client.get('/bye')\n\
         \x20       self.client.auth = ('a', 'b')\n",
    );
    let lines: Vec<usize> = out.untranslated.iter().map(|u| u.line).collect();
    assert_eq!(lines, [5, 10], "{:?}", out.untranslated);
    assert!(
        out.untranslated[0]
            .original
            .contains("while True:\n            break")
    );
    assert!(
        out.toml.contains("#      5 |         while True:"),
        "{}",
        out.toml
    );
    assert!(out.report("f.py").contains("f.py:10: not translated: "));
    assert!(out.toml.contains("on_stop = [\"on_stop\"]"), "{}", out.toml);
}

#[test]
fn bad_files_say_where_and_what() {
    let err = import("class U(HttpUser):\n    def t(self)\n", "f.py").unwrap_err();
    assert!(err.to_string().starts_with("f.py:2:"), "{err}");
    let err = import("x = 1\n", "f.py").unwrap_err();
    assert!(err.to_string().contains("no HttpUser"), "{err}");
}

#[test]
fn the_file_is_never_run() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let source = format!(
        "import os\nos.system('touch {0}')\nopen('{0}', 'w')\n\
         class U(HttpUser):\n    @task\n    def t(self):\n        self.client.get('/')\n",
        marker.display()
    );
    imported(&source);
    assert!(!marker.exists());
}
