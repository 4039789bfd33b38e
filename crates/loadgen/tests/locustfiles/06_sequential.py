# A SequentialTaskSet checkout flow: browse, add to cart, pay, always in that order.
from locust import HttpUser, SequentialTaskSet, constant, task


class Checkout(SequentialTaskSet):
    @task
    def browse(self):
        self.client.get("/shop")

    @task
    def add_to_cart(self):
        self.client.post("/cart", json={"sku": "A-1", "quantity": 2})

    @task
    def pay(self):
        self.client.post("/checkout", json={"card": "4111111111111111"})


class Buyer(HttpUser):
    wait_time = constant(0.002)
    tasks = [Checkout]
