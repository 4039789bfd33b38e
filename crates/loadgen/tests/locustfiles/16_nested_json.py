# Nested fields of JSON answers: ["data"]["id"] and .get(...), then used in paths and bodies.
from locust import HttpUser, constant, task


class ProjectUser(HttpUser):
    wait_time = constant(0.002)

    def on_start(self):
        response = self.client.post("/api/signup", json={"email": "a@example.com"})
        self.user_id = response.json()["user"]["id"]
        self.csrf = response.json().get("csrf")

    @task(2)
    def projects(self):
        response = self.client.get(f"/api/users/{self.user_id}/projects", name="/api/users/[id]/projects")
        project = response.json()["data"]["id"]
        self.client.post(
            f"/api/projects/{project}/tasks",
            json={"owner": self.user_id, "csrf": self.csrf},
            name="/api/projects/[id]/tasks",
        )

    @task
    def me(self):
        self.client.get(f"/api/users/{self.user_id}", name="/api/users/[id]")
