# The shape of Locust's own quickstart (docs/quickstart.rst): a login at start, a weighted
# task, and a loop of item views under one name.
import time
from locust import HttpUser, task, between


class QuickstartUser(HttpUser):
    wait_time = between(0.001, 0.005)

    @task
    def hello_world(self):
        self.client.get("/hello")
        self.client.get("/world")

    @task(3)
    def view_items(self):
        for item_id in range(3):
            self.client.get(f"/item?id={item_id}", name="/item")

    def on_start(self):
        self.client.post("/login", json={"username": "foo", "password": "bar"})
