# A common abstract base (wait time, login) and two concrete users; constant_throughput.
from locust import HttpUser, constant_throughput, task


class BaseUser(HttpUser):
    abstract = True
    wait_time = constant_throughput(200)

    def on_start(self):
        self.client.post("/login", json={"user": "base"})


class MobileUser(BaseUser):
    @task
    def feed(self):
        self.client.get("/mobile/feed")


class DesktopUser(BaseUser):
    weight = 2

    @task
    def feed(self):
        self.client.get("/desktop/feed")
