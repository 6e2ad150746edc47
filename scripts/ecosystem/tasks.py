"""The three tasks `make test-ecosystem` generates adapters for: a description and six short-answer prompts each.

The same six prompts are what every program is compared on, and (as a JSONL task file) what lm-eval and
`text2lora eval --task-file` score.
"""

TASKS = {
    "antonym": {
        "description": "Answer with the antonym of the given English adjective.",
        "rows": [("hot", "cold"), ("big", "small"), ("happy", "sad"), ("fast", "slow"), ("early", "late"),
                 ("strong", "weak")],
    },
    "sentiment": {
        "description": "Classify the sentiment of a movie review as positive or negative.",
        "rows": [
            ("A wonderful film: the acting is superb and the story moved me.", "positive"),
            ("Dull, far too long, and the ending made no sense at all.", "negative"),
            ("I loved every minute of it and will watch it again.", "positive"),
            ("The worst movie I have seen this year; a waste of money.", "negative"),
            ("Beautifully shot, funny and warm. Highly recommended.", "positive"),
            ("Boring characters and a lazy script. I walked out.", "negative"),
        ],
    },
    "lowercase": {
        "description": "Rewrite the given English word in lower case letters.",
        "rows": [("hello", "hello"), ("World", "world"), ("APPLE", "apple"), ("river", "river"), ("Green", "green"),
                 ("moon", "moon")],
    },
}
