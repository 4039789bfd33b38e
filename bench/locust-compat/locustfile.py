# The same load as probe.toml, for real Locust: a health probe, and a list that answers 401 (a
# failure in both tools).
from locust import HttpUser, constant, task


class Probe(HttpUser):
    wait_time = constant(0.1)

    @task(3)
    def health(self):
        self.client.get("/api/v1/health/")

    @task
    def list_tasks(self):
        self.client.get("/api/v1/tasks")
