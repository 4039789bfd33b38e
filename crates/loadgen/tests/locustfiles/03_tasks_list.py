# Module-level task functions in a `tasks` list (the locust examples' basic.py shape): the
# function's argument is the user, and a function listed twice runs twice as often.
from locust import HttpUser, between


def index(l):
    l.client.get("/")


def stats(l):
    l.client.get("/stats/requests")


class WebsiteUser(HttpUser):
    tasks = [index, stats, stats]
    wait_time = between(0.001, 0.004)
