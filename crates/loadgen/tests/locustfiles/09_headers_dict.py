# A headers dictionary kept on the user and passed to each request; URL parts from module
# constants.
from locust import HttpUser, constant, task

API = "/api/v2"
TENANT = "acme"


class TenantUser(HttpUser):
    wait_time = constant(0.002)

    def on_start(self):
        response = self.client.post(API + "/sessions", json={"tenant": TENANT})
        self.session_id = response.json()["session_id"]
        self.headers = {"X-Session": self.session_id, "X-Tenant": TENANT}

    @task(2)
    def dashboard(self):
        self.client.get(f"{API}/dashboard", headers=self.headers)

    @task
    def reports(self):
        self.client.get(API + "/reports", headers=self.headers)
