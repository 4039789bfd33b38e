# What has no counterpart: an event hook, a check of the body, a sleep; each is a NOT TRANSLATED
# comment. The rest is translated and runs, on_stop's logout included (at the run's end).
import time

from locust import HttpUser, between, events, task


@events.test_start.add_listener
def on_test_start(environment, **kwargs):
    print("starting")


class CarefulUser(HttpUser):
    wait_time = between(0.001, 0.004)

    @task(2)
    def checked(self):
        with self.client.get("/status", catch_response=True) as response:
            if "error" in response.text:
                response.failure("error in body")

    @task
    def slow(self):
        self.client.get("/slow")
        time.sleep(0.001)

    def on_stop(self):
        self.client.post("/logout")
