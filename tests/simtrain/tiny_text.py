"""Tiny Brown-format prose and Python code for the simulator-training tests."""

SENTENCES = [
    "The/at cat/nn sat/vbd on/in the/at mat/nn ./.",
    "The/at dog/nn chased/vbd the/at cat/nn around/in the/at garden/nn ./.",
    "He/pps said/vbd ``/`` the/at rain/nn fell/vbd quickly/rb ''/'' ./.",
    "On/in Monday/nr the/at market/nn opened/vbd early/rb ,/, and/cc it/pps closed/vbd late/rb ./.",
    "Rivers/nns flow/vb into/in the/at sea/nn (/( slowly/rb )/) ./.",
    "She/pps was/bedz happy/jj and/cc the/at horse/nn was/bedz sad/jj ./.",
]
CODE = [
    "def add(a, b):\n    # sum two numbers\n    return a + b\n\nclass Point:\n    x = 0\n",
    "import os\nfor name in os.listdir('.'):\n    print(name.upper())\n",
    "def upper(text):\n    return text.upper()  # shout\n",
]


def brown_files(n: int = 12) -> dict[str, str]:
    """Brown-format files: sentences one per line, paragraphs separated by blank lines."""
    files = {}
    for k in range(n):
        lines = [SENTENCES[(k + j) % len(SENTENCES)] for j in range(6)]
        files[f"c{'abcdefghjk'[k % 10]}{k:02d}"] = "\n".join(lines[:3]) + "\n\n" + "\n".join(lines[3:]) + "\n"
    return files
