# A TaskSet as the user's only task (locust examples' nested shape): its on_start runs when
# the user enters it, its tasks keep their weights.
from locust import HttpUser, TaskSet, between, task


class ForumSection(TaskSet):
    def on_start(self):
        self.client.get("/forum")

    @task(3)
    def read_thread(self):
        self.client.get("/forum/thread/7", name="/forum/thread/[id]")

    @task(1)
    def new_thread(self):
        self.client.post("/forum/thread", json={"title": "hi"})


class ForumUser(HttpUser):
    wait_time = between(0.001, 0.004)
    tasks = [ForumSection]
