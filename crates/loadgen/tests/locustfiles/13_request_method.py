# Every verb: client.request with a method, put, patch, delete, head, redirects not followed,
# a timeout.
from locust import HttpUser, constant, task


class RestUser(HttpUser):
    wait_time = constant(0.002)

    @task
    def update(self):
        self.client.put("/things/1", json={"a": 1}, name="/things/[id]")
        self.client.request("PATCH", "/things/1", json={"b": 2}, name="/things/[id]")

    @task
    def remove(self):
        self.client.delete("/things/2", name="/things/[id]", timeout=5)

    @task
    def probe(self):
        self.client.head("/health")
        self.client.get("/old-home", allow_redirects=False)
