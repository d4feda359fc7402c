"""Generates manabi's small sample corpora (datasets/tiny/*.txt).

The text is synthetic: short stories built from templates with a fixed seed, so it is
free of any licence, reproducible byte for byte, and small enough to embed in the binary
as the default data of `manabi pipeline`. Run from the repository root:

    python3 datasets/generate.py
"""

import random
from pathlib import Path

OUT = Path(__file__).resolve().parent / "tiny"

EN_NAMES = ["Aiko", "Ben", "Chidi", "Dana", "Emil", "Farah", "Goro", "Hana", "Ivan", "Jun",
            "Kenji", "Lena", "Mira", "Noah", "Olga", "Priya", "Quinn", "Rin", "Sora", "Tomas"]
EN_PLACES = ["the library", "the harbour", "the old station", "a quiet garden", "the market",
             "the river bank", "the school roof", "a small cafe", "the mountain path", "the workshop"]
EN_THINGS = ["a lantern", "a map", "a red umbrella", "an old radio", "a notebook", "a paper crane",
             "a brass key", "a bicycle", "a kite", "a loaf of bread", "a letter", "a compass"]
EN_VERBS = ["found", "carried", "painted", "repaired", "lost", "borrowed", "hid", "shared",
            "studied", "wrapped", "sold", "remembered"]
EN_FEEL = ["happy", "curious", "tired", "surprised", "calm", "worried", "proud", "hungry"]
EN_WEATHER = ["It was raining.", "The wind was cold.", "The sun was warm.", "Snow fell softly.",
              "The sky was grey.", "The evening was clear."]
EN_END = ["Then everyone went home.", "Nobody forgot that day.", "It was a good day.",
          "Tomorrow would be different.", "They laughed until dark.", "The story ends here."]

JA_NAMES = ["太郎", "花子", "健二", "由美", "翔太", "美咲", "大輔", "さくら", "蓮", "葵", "ハルキ", "ミナ"]
JA_PLACES = ["図書館", "駅前の広場", "小さな喫茶店", "川のほとり", "山の上の神社", "古い商店街",
             "学校の屋上", "港の倉庫", "静かな公園", "町の市場"]
JA_THINGS = ["古い地図", "赤い傘", "手紙", "自転車", "小さな鍵", "ノート", "ラジオ", "凧",
             "お弁当", "折り鶴", "コンパス", "ランプ"]
JA_VERBS = ["見つけました", "運びました", "直しました", "なくしました", "借りました", "隠しました",
            "分けました", "描きました", "包みました", "思い出しました"]
JA_FEEL = ["うれしく", "不思議に", "疲れて", "驚いて", "落ち着いて", "心配になって", "誇らしく"]
JA_WEATHER = ["雨が降っていました。", "風が冷たかったです。", "日差しが暖かかったです。",
              "雪が静かに降りました。", "空は灰色でした。", "夕方の空は澄んでいました。"]
JA_END = ["それからみんなは家に帰りました。", "その日のことは誰も忘れませんでした。",
          "いい一日でした。", "明日はきっと違う日になるでしょう。", "暗くなるまで笑いました。"]


def english(rng: random.Random, paragraphs: int) -> str:
    out = []
    for _ in range(paragraphs):
        a, b = rng.sample(EN_NAMES, 2)
        lines = [rng.choice(EN_WEATHER)]
        for _ in range(rng.randint(2, 5)):
            kind = rng.randrange(4)
            if kind == 0:
                lines.append(f"{a} {rng.choice(EN_VERBS)} {rng.choice(EN_THINGS)} at {rng.choice(EN_PLACES)}.")
            elif kind == 1:
                lines.append(f"{b} felt {rng.choice(EN_FEEL)} and asked, \"Where did you get {rng.choice(EN_THINGS)}?\"")
            elif kind == 2:
                lines.append(f"At {rng.randint(1, 12)} o'clock, {a} and {b} walked to {rng.choice(EN_PLACES)}.")
            else:
                lines.append(f"\"I {rng.choice(EN_VERBS)} it {rng.randint(2, 9)} days ago,\" said {a}.")
        lines.append(rng.choice(EN_END))
        out.append(" ".join(lines))
    return "\n\n".join(out) + "\n"


def japanese(rng: random.Random, paragraphs: int) -> str:
    out = []
    for _ in range(paragraphs):
        a, b = rng.sample(JA_NAMES, 2)
        lines = [rng.choice(JA_WEATHER)]
        for _ in range(rng.randint(2, 5)):
            kind = rng.randrange(4)
            if kind == 0:
                lines.append(f"{a}は{rng.choice(JA_PLACES)}で{rng.choice(JA_THINGS)}を{rng.choice(JA_VERBS)}。")
            elif kind == 1:
                lines.append(f"{b}は{rng.choice(JA_FEEL)}、「その{rng.choice(JA_THINGS)}はどこで手に入れたの？」と聞きました。")
            elif kind == 2:
                lines.append(f"{rng.randint(1, 12)}時に、{a}と{b}は{rng.choice(JA_PLACES)}へ歩いて行きました。")
            else:
                lines.append(f"「{rng.randint(2, 9)}日前に{rng.choice(JA_VERBS)}」と{a}は言いました。")
        lines.append(rng.choice(JA_END))
        out.append("".join(lines))
    return "\n\n".join(out) + "\n"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = random.Random(20261122)
    (OUT / "stories-en.txt").write_text(english(rng, 400), encoding="utf-8")
    (OUT / "stories-ja.txt").write_text(japanese(rng, 400), encoding="utf-8")


if __name__ == "__main__":
    main()
