# A `tasks` dictionary with weights, and query parameters given as params=.
from locust import HttpUser, constant


def browse(user):
    user.client.get("/products", params={"page": 1, "sort": "price"}, name="/products")


def search(user):
    user.client.get("/search", params={"q": "red shoes"})


class Shopper(HttpUser):
    wait_time = constant(0.002)
    tasks = {browse: 3, search: 1}
