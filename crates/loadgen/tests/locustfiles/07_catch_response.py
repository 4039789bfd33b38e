# catch_response with status checks, and an id read from the answer for the next request.
from locust import HttpUser, between, task


class ApiUser(HttpUser):
    wait_time = between(0.001, 0.004)

    @task(2)
    def create_and_read(self):
        with self.client.post("/api/items", json={"name": "x"}, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"create failed: {response.status_code}")
            self.item_id = response.json()["id"]
        self.client.get(f"/api/items/{self.item_id}", name="/api/items/[id]")

    @task
    def missing_is_fine(self):
        with self.client.get("/api/maybe", catch_response=True) as response:
            if response.status_code == 404:
                response.success()
