# Random test data: a choice from a constant list, randint ids, uuid4 keys, %-formatting and
# str.format.
import random
import uuid

from locust import HttpUser, between, task

CATEGORIES = ["books", "music", "games"]


class Browser(HttpUser):
    wait_time = between(0.001, 0.004)

    @task(2)
    def category(self):
        self.client.get("/category/%s" % random.choice(CATEGORIES), name="/category/[name]")

    @task(2)
    def product(self):
        product_id = random.randint(1, 1000)
        self.client.get("/product/{}".format(product_id), name="/product/[id]")

    @task
    def review(self):
        self.client.post(
            "/reviews",
            json={"id": str(uuid.uuid4()), "stars": random.randint(1, 5), "tag": random.choice(CATEGORIES)},
        )
