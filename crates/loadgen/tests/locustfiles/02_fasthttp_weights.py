# Two user classes with weights, as in Locust's docs on user weights; FastHttpUser for the
# readers, constant waits.
from locust import FastHttpUser, HttpUser, constant, task


class Reader(FastHttpUser):
    weight = 3
    wait_time = constant(0.002)
    host = "http://127.0.0.1:8089"

    @task(4)
    def front_page(self):
        self.client.get("/")

    @task
    def article(self):
        self.client.get("/articles/42", name="/articles/[id]")


class Writer(HttpUser):
    weight = 1
    wait_time = constant(0.002)

    @task
    def post_article(self):
        self.client.post("/articles", json={"title": "Load", "body": "testing"})
