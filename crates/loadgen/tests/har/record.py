"""Records a HAR with headless Chromium (Debian's, driven by Playwright from PyPI): a user of a
single-page app on the testbed logs in, reads, then lists its tasks and files, with pauses
between, as a browser's DevTools would save it.

    python record.py BASE_URL USERNAME PASSWORD OUT.har
"""

import sys

from playwright.sync_api import sync_playwright

SESSION = """
async ({username, password}) => {
  const pause = (ms) => new Promise((done) => setTimeout(done, ms));
  const login = await fetch('/api/v1/auth/login', {
    method: 'POST',
    body: new URLSearchParams({username, password}),
  });
  const {access_token} = await login.json();
  await pause(600);
  const auth = {Authorization: 'Bearer ' + access_token};
  await fetch('/api/v1/users/me', {headers: auth});
  await fetch('/api/v1/tasks?limit=5', {headers: auth});
  await pause(400);
  await fetch('/api/v1/files', {headers: auth});
}
"""


def main() -> None:
    base, username, password, out = sys.argv[1:5]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox"]
        )
        context = browser.new_context(record_har_path=out)
        page = context.new_page()
        page.goto(base + "/api/v1/health/")
        page.evaluate(SESSION, {"username": username, "password": password})
        context.close()
        browser.close()


if __name__ == "__main__":
    main()
