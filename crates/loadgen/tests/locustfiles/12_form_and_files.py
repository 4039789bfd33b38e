# A form login (data=) and an upload (files=), as Django and Flask apps' locustfiles do.
from locust import HttpUser, between, task


class Uploader(HttpUser):
    wait_time = between(0.001, 0.004)

    def on_start(self):
        self.client.post("/accounts/login/", data={"username": "u1", "password": "p1"})

    @task
    def upload(self):
        self.client.post(
            "/photos",
            data={"caption": "cat"},
            files={"image": ("avatar.png", open("avatar.png", "rb"), "image/png")},
        )

    @task(3)
    def gallery(self):
        self.client.get("/photos")
