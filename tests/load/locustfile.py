"""Load for the recommendation service, for people who prefer locust to `benchmarks/serving.py` (which uses wrk).

    .venv/bin/locust -f tests/load/locustfile.py --host http://127.0.0.1:3000 --headless -u 32 -r 8 -t 60s

The request mix is the benchmark's: 80 % known users (ids 1..943), 20 % unknown users with a sign-up profile,
n = 10; one in twenty requests is followed by a feedback event for its first item. A 429 (overload shed by the
service) is counted as its own failure type, so it is visible apart from errors.
"""

from __future__ import annotations

import random
import uuid

from locust import FastHttpUser, between, task

OCCUPATIONS = ["student", "engineer", "writer", "educator", "programmer", "retired", "other"]


class Visitor(FastHttpUser):
    wait_time = between(0, 0.01)

    def body(self) -> dict[str, object]:
        if random.random() < 0.8:
            return {"user_id": random.randint(1, 943), "n": 10}
        return {"user_id": random.randint(10_000, 1_000_000), "n": 10,
                "profile": {"age": random.randint(16, 70), "gender": random.choice("MF"),
                            "occupation": random.choice(OCCUPATIONS), "zip": f"{random.randint(10000, 99999)}"}}

    @task
    def predict(self) -> None:
        with self.client.post("/predict", json=self.body(), catch_response=True) as response:
            if response.status_code == 429:
                response.failure("429 shed")
                return
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
                return
            answer = response.json()
            if random.random() < 0.05 and answer["items"]:
                self.client.post("/feedback", json={
                    "event_id": uuid.uuid4().hex, "request_id": answer["request_id"], "user_id": answer["user_id"],
                    "item_id": answer["items"][0]["item_id"], "event": "click"})
