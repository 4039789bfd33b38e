# Token login in on_start, the token in every request's headers, and a login again on 401.
from locust import HttpUser, between, task

USERNAME = "loadtest"
PASSWORD = "secret"


class AuthUser(HttpUser):
    wait_time = between(0.001, 0.004)

    def on_start(self):
        self.login()

    def login(self):
        response = self.client.post(
            "/api/auth/login", json={"username": USERNAME, "password": PASSWORD}
        )
        self.token = response.json()["access_token"]
        self.client.headers.update({"Authorization": f"Bearer {self.token}"})

    @task(3)
    def profile(self):
        response = self.client.get("/api/me")
        if response.status_code == 401:
            self.login()

    @task
    def orders(self):
        self.client.get("/api/orders")
