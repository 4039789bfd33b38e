# One admin (fixed_count) beside weighted visitors, tags on tasks, constant pacing (the same
# for both, so that their shares do not hang on how closely each tool keeps a pace).
from locust import HttpUser, constant_pacing, tag, task


class Admin(HttpUser):
    fixed_count = 1
    wait_time = constant_pacing(0.005)

    @tag("admin")
    @task
    def audit(self):
        self.client.get("/admin/audit")


class Visitor(HttpUser):
    wait_time = constant_pacing(0.005)

    @tag("read")
    @task(3)
    def home(self):
        self.client.get("/home")

    @tag("read", "slow")
    @task
    def archive(self):
        self.client.get("/archive")
