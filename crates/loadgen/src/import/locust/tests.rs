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
