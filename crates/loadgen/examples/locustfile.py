# The seed's locustfile, in its shape: each user registers, logs in with a form, keeps the token
# in its headers, uploads a video, then lists tasks and files and reads its stats; it deletes its
# video when it stops.
import random

from locust import HttpUser, between, task

PASSWORD = "LoadTest1-pass"


class FFmpegAPIUser(HttpUser):
    wait_time = between(1, 3)

    def on_start(self):
        self.username = f"user_{random.randint(1000, 9999)}"
        self.client.post(
            "/api/v1/auth/register",
            json={"username": self.username, "email": f"{self.username}@example.com", "password": PASSWORD},
        )
        response = self.client.post(
            "/api/v1/auth/login", data={"username": self.username, "password": PASSWORD}
        )
        self.token = response.json()["access_token"]
        self.client.headers.update({"Authorization": f"Bearer {self.token}"})
        response = self.client.post(
            "/api/v1/files/upload",
            files={"file": ("test_video.mp4", open("test_video.mp4", "rb"), "video/mp4")},
        )
        self.file_id = response.json()["id"]

    @task(3)
    def list_tasks(self):
        self.client.get("/api/v1/tasks")

    @task(2)
    def list_files(self):
        self.client.get("/api/v1/files")

    @task
    def user_stats(self):
        response = self.client.get("/api/v1/users/me/stats")
        if response.status_code == 401:
            self.on_start()

    def on_stop(self):
        self.client.delete(f"/api/v1/files/{self.file_id}", name="/api/v1/files/[id]")
