"""Six short texts of different kinds (prose, code, dates, dialogue) that the test corpora are made of."""

SAMPLE_TEXTS = [
    "The cat sat on the mat. The dog chased the cat around the garden until noon.",
    "def add(a, b):\n    return a + b\n\nclass Point:\n    x: int = 0\n",
    "On Monday and Tuesday the market opened early; on Friday it closed late.",
    "Rivers flow into the sea, and the sea returns rain to the mountains.",
    "import os\nfor name in os.listdir('.'):\n    print(name.upper())\n",
    "She said, \"Peace be with you,\" and left the room quietly at dawn.",
]
