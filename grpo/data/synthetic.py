"""Deterministic GSM8K-style arithmetic word problems: the offline default dataset ``synthetic:gsm8k``.

Each problem is a short story of one to several arithmetic steps over small whole numbers.
The solution is written the way GSM8K writes it -- one sentence per step with calculator
annotations ``<<a*b=c>>`` and a final ``#### N`` line -- so every loader, reward and warm-start
rewrite treats real and synthetic rows identically. Answers are correct by construction: each
step's result is computed here, and the final number is the last step's result.

    >>> rows = generate(3, seed=0)
    >>> rows == generate(3, seed=0)
    True
    >>> rows[0]["answer"].splitlines()[-1].startswith("#### ")
    True
"""

from __future__ import annotations

import random

NAMES = ["Ava", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jamal",
         "Kira", "Liam", "Maya", "Noah", "Olga", "Pablo", "Quinn", "Rosa", "Sam", "Tara"]
ITEMS = [("apple", "apples"), ("book", "books"), ("marble", "marbles"), ("cookie", "cookies"),
         ("pencil", "pencils"), ("sticker", "stickers"), ("cupcake", "cupcakes"), ("shell", "shells"),
         ("card", "cards"), ("flower", "flowers")]
CONTAINERS = ["box", "bag", "basket", "jar", "crate", "tray"]


def _start(rng: random.Random, name: str, item: str) -> tuple[str, str, int]:
    """Opening fact: returns (question sentence, solution sentence, quantity)."""
    kind = rng.randrange(3)
    if kind == 0:
        n = rng.randint(3, 40)
        return f"{name} has {n} {item}.", "", n
    if kind == 1:
        boxes, per = rng.randint(2, 9), rng.randint(2, 12)
        n = boxes * per
        container = rng.choice(CONTAINERS)
        return (f"{name} buys {boxes} {container}s of {item} with {per} {item} in each {container}.",
                f"{name} buys {boxes} * {per} = <<{boxes}*{per}={n}>>{n} {item}.", n)
    a, b = rng.randint(5, 30), rng.randint(5, 30)
    n = a + b
    return (f"{name} picks {a} {item} in the morning and {b} {item} in the afternoon.",
            f"{name} picks {a} + {b} = <<{a}+{b}={n}>>{n} {item}.", n)


def _step(rng: random.Random, name: str, item: str, n: int) -> tuple[str, str, int]:
    """One more operation on the running quantity ``n`` (always a whole, non-negative result)."""
    friend = rng.choice([x for x in NAMES if x != name])
    kind = rng.randrange(5)
    if kind == 0:
        k = rng.randint(2, 25)
        m = n + k
        return (f"Then {friend} gives {name} {k} more {item}.",
                f"After the gift, {name} has {n} + {k} = <<{n}+{k}={m}>>{m} {item}.", m)
    if kind == 1 and n > 1:
        k = rng.randint(1, n - 1)
        m = n - k
        return (f"{name} gives {k} {item} to {friend}.",
                f"{name} keeps {n} - {k} = <<{n}-{k}={m}>>{m} {item}.", m)
    if kind == 2 and n <= 60:
        k = rng.randint(2, 4)
        m = n * k
        return (f"By the end of the week {name} has {k} times as many {item} as that.",
                f"{name} ends the week with {n} * {k} = <<{n}*{k}={m}>>{m} {item}.", m)
    divisors = [d for d in range(2, 7) if n % d == 0]
    if kind == 3 and divisors:
        k = rng.choice(divisors)
        m = n // k
        return (f"{name} shares them equally among {k} friends.",
                f"Each friend gets {n} / {k} = <<{n}/{k}={m}>>{m} {item}.", m)
    price = rng.randint(2, 9)
    m = n * price
    return (f"Each of the {item} sells for ${price}, and {name} sells all of them.",
            f"{name} earns {n} * {price} = <<{n}*{price}={m}>>{m} dollars.", m)


def _question_tail(solution_last: str) -> str:
    if "dollars" in solution_last:
        return "How many dollars does {name} earn?"
    if "Each friend gets" in solution_last:
        return "How many {item} does each friend get?"
    return "How many {item} does {name} have now?"


def make_problem(rng: random.Random, max_steps: int = 4) -> dict:
    """One problem as a GSM8K row ``{"question", "answer"}``; ``answer`` ends with ``#### N``."""
    name = rng.choice(NAMES)
    item = rng.choice(ITEMS)[1]
    question, solution, n = _start(rng, name, item)
    questions, solutions = [question], [solution] if solution else []
    for _ in range(rng.randint(1, max_steps)):
        if solutions and ("dollars" in solutions[-1] or "Each friend gets" in solutions[-1]):
            break  # money and per-friend shares end the story
        q, s, n = _step(rng, name, item, n)
        questions.append(q)
        solutions.append(s)
    tail = _question_tail(solutions[-1]).format(name=name, item=item)
    return {"question": " ".join(questions + [tail]), "answer": "\n".join(solutions + [f"#### {n}"])}


def generate(num_problems: int, seed: int = 0, max_steps: int = 4) -> list[dict]:
    """``num_problems`` GSM8K-format rows, identical for the same ``seed``.

    Args:
        num_problems: how many rows.
        seed: the RNG seed; different splits use different seeds.
        max_steps: most operations after the opening fact (at least one is always done).

    Returns:
        A list of ``{"question": str, "answer": str}`` dicts in GSM8K's format.
    """
    rng = random.Random(seed)
    return [make_problem(rng, max_steps) for _ in range(num_problems)]
