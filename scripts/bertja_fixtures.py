"""Makes fixtures/tokenize/bertja-*/: transformers' `BertJapaneseTokenizer` (the slow,
Python-only tokenizer of cl-tohoku/bert-base-japanese and its kin, which has no
tokenizer.json) with a MeCab dictionary small enough to commit, and what transformers
5.25 makes of it (`AutoTokenizer.from_pretrained(folder)`), for manabi's own
BertJapaneseTokenizer:

- `bertja-dic/`: a tiny MeCab system dictionary compiled here with
  `fugashi.build_dictionary` (MeCab's mecab-dict-index) from sources this script writes:
  an ipadic-style char.def (11 categories, compatible categories such as
  `0x30FC KATAKANA HIRAGANA` and kanji numerals `KANJINUMERIC KANJI`, ipadic's SPACE set
  0x20 0x09 0x0A 0x0B, ipadic's `0x00D0 SPACE` slip that a later Latin-1 line overrides,
  and one deliberate difference: 0x0000 is SYMBOL, because MeCab reads every character
  above U+FFFF as code 0), an unk.def with one or two entries per category, a 13-class
  matrix.def (class 0 is BOS/EOS) with varied connection costs, and a lex.csv of about
  1,650 entries (particles, auxiliaries, verbs and adjectives in their inflected forms,
  nouns, pronouns, katakana loanwords, English words, numbers, symbols, surfaces with a
  comma, a double quote or a space in them, surfaces listed twice with different costs
  or classes, and the 300 most frequent two-kanji words of 吾輩は猫である). Only what
  MeCab reads at run time is kept: sys.dic, unk.dic, matrix.bin, char.bin, dicrc, and an
  empty mecabrc.
- `bertja-mecab-wordpiece/`: `word_tokenizer_type: "mecab"` with
  `mecab_kwargs: {"mecab_dic": null, "mecab_option": "-d ../bertja-dic"}` (a path
  relative to the tokenizer folder, which manabi resolves from there; MeCab itself
  resolves it from the working directory, so this script loads the folder with the
  folder as working directory and MECABRC pointing at bertja-dic/mecabrc, since MeCab
  refuses to start without some mecabrc when no `-r` is given), `do_lower_case: false`,
  WordPiece vocab.txt of 4,000 ([PAD] [UNK] [CLS] [SEP] [MASK] as ids 0-4, as in
  cl-tohoku's) trained on 吾輩は猫である and the first 20,000 lines of tinyshakespeare,
  each split into MeCab words with this dictionary exactly as the tokenizer splits
  them. The training is that of `tokenizers`' WordPieceTrainer (BPE merges with a "##"
  continuation prefix) redone here in Python with ties broken by text, because the
  Rust trainer breaks ties between equally frequent characters in hash-map order and
  so gives a different vocab on every run.
- `bertja-mecab-lower/`: the same with `do_lower_case: true` (a vocab trained on the
  lowercased words).
- `bertja-mecab-char/`: `subword_tokenizer_type: "character"`, vocab = the specials and
  the 2,500 most frequent characters of the NFKC-normalised training text.
- `bertja-basic/`: `word_tokenizer_type: "basic"` (BERT's BasicTokenizer with
  `tokenize_chinese_chars=False`, no NFKC), WordPiece, `do_lower_case: true`, the vocab
  trained on the training text split by that BasicTokenizer.

Each tokenizer folder has vocab.txt, tokenizer_config.json, expected.json (the class,
vocab size, named special tokens, and 73 probe texts written here, not taken from the
corpora, with `tok(text)["input_ids"]`, `tok.tokenize(text)`,
`tok(text, add_special_tokens=False)["input_ids"]` and
`tok.decode(ids, skip_special_tokens=True)`) and held_out.json.gz: for about 500 lines of
../shared/data not used in training (こころ, and tinyshakespeare after line 20,000),
named by file and 0-based line (after the BOM is removed, split at "\\n", a trailing
"\\r" removed), `tok(line)["input_ids"]` and, for every 10th, the decoded text. The data
files are named with their SHA-256 so a test can tell a changed file from a wrong
tokenizer.

Rerunning gives byte-identical files.

    pip install "transformers==5.25.*" tokenizers fugashi    # made with transformers
    python3 scripts/bertja_fixtures.py                       # 5.25.0, fugashi 1.5.2
                                                             # (MeCab 0.996 inside)

BERTJA_FIXTURES_OUT=DIR writes the folders under DIR instead of fixtures/tokenize.
"""

import collections
import contextlib
import gzip
import hashlib
import heapq
import importlib.metadata
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import unicodedata
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import fugashi
import transformers
from transformers import AutoTokenizer
from transformers.models.bert_japanese.tokenization_bert_japanese import (
    BasicTokenizer,
    MecabTokenizer,
)
from transformers.utils import logging as hf_logging

hf_logging.set_verbosity_error()

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(os.environ.get("BERTJA_FIXTURES_OUT", ROOT / "fixtures" / "tokenize"))
DATA = ROOT.parent / "shared" / "data"
DIC = OUT / "bertja-dic"

SHAKESPEARE = "tinyshakespeare.txt"
WAGAHAI = "aozora-wagahai-wa-neko-de-aru.txt"
KOKORO = "aozora-kokoro.txt"

# Shakespeare: lines before this index train, lines from it on are held out.
EN_SPLIT = 20000
# 吾輩は猫である trains; こころ is held out.

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def read_lines(name):
    """Lines as the Rust test reads them: BOM removed, split at \\n, a trailing \\r removed."""
    text = (DATA / name).read_text(encoding="utf-8")
    return [line.removesuffix("\r") for line in text.removeprefix("\ufeff").split("\n")]


def sha256(name):
    return hashlib.sha256((DATA / name).read_bytes()).hexdigest()


def nonblank(lines):
    return [line for line in lines if line.strip()]


# ---------------------------------------------------------------------------------------
# The dictionary sources.

CHAR_DEF = """\
#
# char.def of manabi's tiny test dictionary: ipadic's categories and most of its ranges.
#
# CATEGORY_NAME INVOKE GROUP LENGTH
#  INVOKE: 1: always build unknown words; 0: only where no dictionary word starts here
#  GROUP:  1: one unknown word for the whole run of characters of the category
#  LENGTH: also build unknown words of 1..LENGTH characters
DEFAULT        0 1 0  # DEFAULT is a mandatory category!
SPACE          0 1 0
KANJI          0 0 2
SYMBOL         1 1 0
NUMERIC        1 1 0
ALPHA          1 1 0
HIRAGANA       0 1 2
KATAKANA       1 1 2
KANJINUMERIC   1 1 0
GREEK          1 1 0
CYRILLIC       1 1 0

# CODE(UCS2) CATEGORY [COMPATIBLE CATEGORY ...]; a later line overrides an earlier one

# SPACE (ipadic's: 0x0020 0x0009 0x000B 0x000A; its 0x00D0 line is overridden by the
# Latin-1 range below, and 0x000D stays DEFAULT)
0x0020 SPACE  # DO NOT REMOVE THIS LINE, 0x0020 is reserved for SPACE
0x00D0 SPACE
0x0009 SPACE
0x000B SPACE
0x000A SPACE

# Not in ipadic: MeCab reads every character above U+FFFF as code 0
0x0000 SYMBOL

# ASCII
0x0021..0x002F SYMBOL
0x0030..0x0039 NUMERIC
0x003A..0x0040 SYMBOL
0x0041..0x005A ALPHA
0x005B..0x0060 SYMBOL
0x0061..0x007A ALPHA
0x007B..0x007E SYMBOL

# Latin
0x00A1..0x00BF SYMBOL  # Latin 1
0x00C0..0x00FF ALPHA   # Latin 1
0x0100..0x017F ALPHA   # Latin Extended A
0x0180..0x0236 ALPHA   # Latin Extended B
0x1E00..0x1EF9 ALPHA   # Latin Extended Additional

# CYRILLIC
0x0400..0x04F9 CYRILLIC
0x0500..0x050F CYRILLIC  # Cyrillic supplementary

# GREEK
0x0374..0x03FB GREEK  # Greek and Coptic

# HIRAGANA
0x3041..0x309F HIRAGANA

# KATAKANA
0x30A1..0x30FF KATAKANA
0x31F0..0x31FF KATAKANA  # Small KU .. Small RO
0x30FC         KATAKANA HIRAGANA  # ー
0xFF66..0xFF9D KATAKANA  # Half KATAKANA
0xFF9E..0xFF9F KATAKANA  # Half KATAKANA VOICED/SEMI-VOICED

# KANJI
0x2E80..0x2EF3 KANJI  # CJK Radicals Supplement
0x2F00..0x2FD5 KANJI
0x3400..0x4DB5 KANJI  # CJK Unified Ideographs Extension A
0x4E00..0x9FA5 KANJI
0xF900..0xFA2D KANJI
0xFA30..0xFA6A KANJI

# KANJI-NUMERIC (一 二 三 四 五 六 七 八 九 十 百 千 万 億 兆)
0x4E00 KANJINUMERIC KANJI
0x4E8C KANJINUMERIC KANJI
0x4E09 KANJINUMERIC KANJI
0x56DB KANJINUMERIC KANJI
0x4E94 KANJINUMERIC KANJI
0x516D KANJINUMERIC KANJI
0x4E03 KANJINUMERIC KANJI
0x516B KANJINUMERIC KANJI
0x4E5D KANJINUMERIC KANJI
0x5341 KANJINUMERIC KANJI
0x767E KANJINUMERIC KANJI
0x5343 KANJINUMERIC KANJI
0x4E07 KANJINUMERIC KANJI
0x5104 KANJINUMERIC KANJI
0x5146 KANJINUMERIC KANJI

# ZENKAKU
0xFF10..0xFF19 NUMERIC
0xFF21..0xFF3A ALPHA
0xFF41..0xFF5A ALPHA
0xFF01..0xFF0F SYMBOL
0xFF1A..0xFF1F SYMBOL
0xFF3B..0xFF40 SYMBOL
0xFF5B..0xFF65 SYMBOL
0xFFE0..0xFFEF SYMBOL  # HalfWidth and Full width Form

# OTHER SYMBOLS
0x2000..0x206F SYMBOL   # General Punctuation
0x2070..0x209F NUMERIC  # Superscripts and Subscripts
0x20A0..0x20CF SYMBOL   # Currency Symbols
0x20D0..0x20FF SYMBOL   # Combining Diaritical Marks for Symbols
0x2100..0x214F SYMBOL   # Letterlike Symbols
0x2150..0x218F NUMERIC  # Number forms
0x2190..0x21FF SYMBOL   # Arrow
0x2200..0x22FF SYMBOL   # Mathematical Operators
0x2300..0x23FF SYMBOL   # Miscellaneuos Technical
0x2460..0x24FF SYMBOL   # Enclosed NUMERICs
0x2501..0x257F SYMBOL   # Box Drawing
0x2580..0x259F SYMBOL   # Block Elements
0x25A0..0x25FF SYMBOL   # Geometric Shapes
0x2600..0x26FE SYMBOL   # Miscellaneous Symbols
0x2700..0x27BF SYMBOL   # Dingbats
0x27F0..0x27FF SYMBOL   # Supplemental Arrows A
0x27C0..0x27EF SYMBOL   # Miscellaneous Mathematical Symbols-A
0x2800..0x28FF SYMBOL   # Braille Patterns
0x2900..0x297F SYMBOL   # Supplemental Arrows B
0x2B00..0x2BFF SYMBOL   # Miscellaneous Symbols and Arrows
0x2A00..0x2AFF SYMBOL   # Supplemental Mathematical Operators
0x3300..0x33FF SYMBOL
0x3200..0x32FE SYMBOL   # ENclosed CJK Letters and Months
0x3000..0x303F SYMBOL   # CJK Symbol and Punctuation
0xFE30..0xFE4F SYMBOL   # CJK Compatibility Forms
0xFE50..0xFE6B SYMBOL   # Small Form Variants

# After the CJK punctuation range, so that they win
0x3005 KANJI SYMBOL         # 々
0x3007 SYMBOL KANJINUMERIC  # 〇
"""

# unk.def: CATEGORY,left id,right id,cost,features (ipadic's nine feature columns).
UNK_DEF = """\
DEFAULT,10,10,5800,記号,一般,*,*,*,*,*
SPACE,10,10,6000,記号,空白,*,*,*,*,*
KANJI,1,1,7400,名詞,一般,*,*,*,*,*
KANJI,2,2,8200,名詞,固有名詞,一般,*,*,*,*
SYMBOL,10,10,3600,記号,一般,*,*,*,*,*
NUMERIC,3,3,2200,名詞,数,*,*,*,*,*
ALPHA,1,1,4100,名詞,一般,*,*,*,*,*
ALPHA,2,2,3900,名詞,固有名詞,組織,*,*,*,*
HIRAGANA,1,1,6400,名詞,一般,*,*,*,*,*
HIRAGANA,9,9,6900,副詞,一般,*,*,*,*,*
KATAKANA,1,1,3300,名詞,一般,*,*,*,*,*
KATAKANA,2,2,3800,名詞,固有名詞,一般,*,*,*,*
KANJINUMERIC,3,3,2600,名詞,数,*,*,*,*,*
GREEK,1,1,4200,名詞,一般,*,*,*,*,*
CYRILLIC,1,1,4200,名詞,一般,*,*,*,*,*
"""

# Context classes: the left id and the right id of every entry are its class.
CLASSES = [
    "BOS/EOS", "名詞", "固有名詞・代名詞", "数", "格助詞・接続助詞", "係助詞・副助詞・終助詞",
    "動詞", "助動詞", "形容詞", "副詞・連体詞・接続詞・感動詞", "記号", "接尾", "接頭詞",
]

# Connection costs: row = the class of the word on the left (its right id), column = the
# class of the word on the right (its left id); class 0 is BOS on the left, EOS on the right.
MATRIX = """\
        0     1     2     3     4     5     6     7     8     9    10    11    12
 0      0  -200  -300     0  1500  1400   100  2000     0  -200   300  1500  -100
 1   -300   300   400   500  -800  -700   600  -200   500   400  -300  -400   800
 2   -200   300   500   600  -900  -800   700  -100   600   500  -300  -600   800
 3   -100  -100   500  -300  -500  -400   700   100   700   500  -200  -800   900
 4    400  -500  -500  -300   800   300  -400   700  -300  -200   100  1200  -300
 5   -200  -400  -400  -200   600   500  -300   400  -200  -300  -200  1200  -200
 6   -100   600   700   700  -300  -200   300  -800   600   400  -300   900   900
 7   -500   500   600   600  -400  -500   500  -400   500   300  -500   900   800
 8   -200  -200   500   500  -300  -300  -200  -500   300   300  -300   900   900
 9    200  -100     0     0   500   400  -200   400  -100   300     0  1000     0
10   -300  -100  -100  -100   500   500     0   700     0  -100  -200  1000  -100
11   -200   300   500   500  -600  -500   600  -200   500   400  -300   500   900
12   1500  -600  -300  -600  1500  1500   800  1500   500   800  1000  1500  1500
"""

DICRC = """\
;
; dicrc of manabi's tiny test dictionary (scripts/bertja_fixtures.py)
;
cost-factor = 800
bos-feature = BOS/EOS,*,*,*,*,*,*,*,*
eval-size = 8
unk-eval-size = 4
config-charset = UTF-8
; max-grouping-size = 24
"""

# Base word cost of each class.
BASE_COST = {1: 3600, 2: 3900, 3: 2600, 4: 1000, 5: 1200, 6: 3200, 7: 1500, 8: 3000,
             9: 3000, 10: 1600, 11: 3000, 12: 3400}

PARTICLES_CASE = """
が 格助詞,一般 | を 格助詞,一般 | に 格助詞,一般 | へ 格助詞,一般 | と 格助詞,一般 |
で 格助詞,一般 | から 格助詞,一般 | より 格助詞,一般 | まで 格助詞,一般 | の 格助詞,一般 |
の 連体化,* | と 格助詞,引用 | って 格助詞,連語 | て 接続助詞,* | で 接続助詞,* |
ば 接続助詞,* | ので 接続助詞,* | のに 接続助詞,* | けれど 接続助詞,* | けれども 接続助詞,* |
し 接続助詞,* | ながら 接続助詞,* | が 接続助詞,* | から 接続助詞,* | ても 接続助詞,* |
に 副詞化,* | と 並立助詞,* | や 並立助詞,* | とか 並立助詞,* | たり 並立助詞,* | だり 並立助詞,*
"""

PARTICLES_BIND = """
は 係助詞,* | も 係助詞,* | こそ 係助詞,* | しか 係助詞,* | でも 係助詞,* | さえ 係助詞,* |
まで 副助詞,* | ばかり 副助詞,* | だけ 副助詞,* | ほど 副助詞,* | くらい 副助詞,* |
ぐらい 副助詞,* | など 副助詞,* | なんか 副助詞,* | なんて 副助詞,* | か 副助詞／並立助詞／終助詞,* |
ね 終助詞,* | ねえ 終助詞,* | よ 終助詞,* | な 終助詞,* | わ 終助詞,* | ぞ 終助詞,* |
ぜ 終助詞,* | さ 終助詞,* | の 終助詞,* | かしら 終助詞,* | かい 終助詞,*
"""

AUXILIARIES = """
だ 特殊・ダ,基本形 | だっ 特殊・ダ,連用タ接続 | で 特殊・ダ,連用形 | な 特殊・ダ,体言接続 |
なら 特殊・ダ,仮定形 | だろ 特殊・ダ,未然形 | です 特殊・デス,基本形 | でし 特殊・デス,連用形 |
でしょ 特殊・デス,未然形 | ます 特殊・マス,基本形 | まし 特殊・マス,連用形 | ませ 特殊・マス,未然形 |
ましょ 特殊・マス,未然ウ接続 | た 特殊・タ,基本形 | たら 特殊・タ,仮定形 | だ 特殊・タ,基本形 |
ない 特殊・ナイ,基本形 | なかっ 特殊・ナイ,連用タ接続 | なく 特殊・ナイ,連用テ接続 |
なけれ 特殊・ナイ,仮定形 | ぬ 特殊・ヌ,基本形 | ん 特殊・ヌ,基本形 | ず 特殊・ヌ,連用ニ接続 |
れる 一段,基本形 | れ 一段,連用形 | られる 一段,基本形 | られ 一段,連用形 | せる 一段,基本形 |
させる 一段,基本形 | う 不変化型,基本形 | よう 不変化型,基本形 | らしい 形容詞・イ段,基本形 |
たい 特殊・タイ,基本形 | たく 特殊・タイ,連用テ接続 | たかっ 特殊・タイ,連用タ接続 |
まい 不変化型,基本形 | そう 特殊・ダ,語幹
"""

GODAN = {  # ending: (未然形, 連用形, 基本形, 仮定形, 未然ウ接続, 連用タ接続)
    "く": "かきくけこい", "ぐ": "がぎぐげごい", "す": "さしすせそし", "つ": "たちつてとっ",
    "ぬ": "なにぬねのん", "ぶ": "ばびぶべぼん", "む": "まみむめもん", "る": "らりるれろっ",
    "う": "わいうえおっ",
}
GODAN_FORMS = ["未然形", "連用形", "基本形", "仮定形", "未然ウ接続", "連用タ接続"]
GODAN_VERBS = """
書く 行く 聞く 歩く 泣く 働く 動く 置く 開く 描く 着く 急ぐ 泳ぐ 話す 出す 返す 探す 思い出す
待つ 持つ 立つ 打つ 死ぬ 読む 住む 飲む 休む 進む 頼む 呼ぶ 遊ぶ 飛ぶ 喜ぶ 帰る 取る 知る
入る 分る 分かる 成る なる ある 困る 座る 眠る 乗る 送る 作る 終る 始まる 守る 思う 言う 云う
買う 会う 使う 笑う 違う 習う 思い合う 向う 払う
"""
ICHIDAN_VERBS = """
見る 居る いる 出る 寝る 着る 食べる 教える 考える 見える 生れる 生まれる 覚える 答える
始める 起きる 出来る できる 付ける 感じる 信じる 過ぎる 述べる 離れる 忘れる 落ちる 借りる
"""
ICHIDAN_FORMS = [("", "未然形"), ("", "連用形"), ("る", "基本形"), ("れ", "仮定形"),
                 ("ろ", "命令ｒｏ"), ("よ", "命令ｙｏ")]
SURU = [("さ", "未然レル接続"), ("し", "連用形"), ("する", "基本形"), ("すれ", "仮定形"),
        ("せ", "未然ヌ接続"), ("しろ", "命令ｒｏ"), ("しよ", "未然ウ接続")]
KURU = [("来", "未然形"), ("来", "連用形"), ("来る", "基本形"), ("来れ", "仮定形"),
        ("来い", "命令ｉ"), ("こ", "未然形"), ("き", "連用形"), ("くる", "基本形")]

ADJECTIVES = """
無い ない 良い よい いい 悪い 大きい 小さい 新しい 古い 白い 黒い 面白い 早い 長い 高い 強い
若い 寒い 暑い 美しい 嬉しい 悲しい 恐ろしい 珍しい 可笑しい うまい 冷たい 温かい 多い 少ない
"""
ADJ_FORMS = [("い", "基本形"), ("かっ", "連用タ接続"), ("く", "連用テ接続"), ("けれ", "仮定形"),
             ("かろ", "未然ウ接続"), ("き", "体言接続")]

NOUNS = """
猫 名前 人間 主人 書生 先生 顔 家 所 時 事 こと もの 物 話 心 気 日 月 年 今日 明日 昨日 天気
雨 日本 日本語 文章 言葉 世の中 世間 学校 友達 子供 女 男 眼 目 手 足 頭 口 耳 鼻 声 水 火 茶
飯 酒 金 本 机 部屋 座敷 台所 庭 縁側 障子 襖 毎日 今 前 後 上 下 中 外 内 方 自分 様子 問題
意味 関係 必要 以上 以下 一番 見当 記憶 写真 手紙 新聞 雑誌 電車 汽車 車 道 町 国 世界 空 海
山 川 木 花 草 鼠 犬 鳥 魚 雪 風 春 夏 秋 冬 朝 夜 晩 昼 午後 質問 答え 氷 文 漢字 片仮名
平仮名 寿司 天ぷら 森 人 妻 奥さん 細君 学問 教師 議論 返事 出来 理由 結果 仕方 気分 天気
大変 仕事 病気 兄 父 母 叔父 叔母 墓 東京 鎌倉 田舎 宿 海岸 散歩 覚悟 秘密 過去 未来
最後 最初 始め 終り 半分 全部 ひとつ ふたつ ため よう ところ わけ はず つもり ほう うち
とき 二人 一人 三人 一つ 二つ 三つ 何時 何処 御飯 御馳走 相談 説明 経験 記事 運動 容易
"""
KATAKANA_NOUNS = """
ラーメン コーヒー テーブル ノート ペン パン ビール ホテル テレビ ラジオ コンピュータ
コンピューター トークン テキスト データ モデル ファイル インターネット メール ページ ゲーム
スポーツ ニュース バス タクシー カメラ ピアノ ギター ボール ドア ベッド シャツ ズボン スープ
ケーキ アイス ジュース ミルク バター チーズ トマト レモン オレンジ バナナ メロン カタカナ
ハンカチ ランプ ステッキ ハイカラ ソフトウェア アルゴリズム データベース ネコ ニャー
"""
PRONOUNS = """
吾輩 我輩 私 わたし 僕 君 彼 彼女 あなた 貴方 誰 何 なに なん これ それ あれ どれ ここ
そこ あそこ どこ こっち そっち
"""
PROPER = """
苦沙弥 迷亭 寒月 東風 漱石 夏目 鈴木 田中 山田 東京都 京都
大阪 ロンドン シェークスピア イギリス アメリカ ヨーロッパ フランス ドイツ 日本人 K Mara Tolven
"""
NUMBERS = """
一 二 三 四 五 六 七 八 九 十 百 千 万 億 兆 〇 二十 三十 百万 0 1 2 3 10 12 20 100 1000 2024
"""
SUFFIXES = """
さん 君 様 氏 達 たち 者 的 性 化 円 年 月 日 時 人 屋 中 家 語 際 頃 ごろ 目 的な 方
"""
PREFIXES = """
お ご 御 不 無 大 小 真 第 各
"""
OTHERS = """
まだ もう とても すぐ 少し 大変 たいへん 決して 全く まるで 何だか なかなか よく ちょっと
きっと 必ず ただ やはり やっぱり 実に 甚だ そう こう ああ どう しかし けれども そして それから
だから また 又 この その あの どの 大きな 小さな ある いわゆる はい いいえ ええ おい さあ
とんと 常に 一向 到底 とにかく もし たとえ なお ついに 始めて 初めて
"""
SYMBOLS = """
。 、 「 」 『 』 ( ) ! ? . ; : ・ … — ' - [ ] ※ | 《 》 ○ ◯ ― ～ ~ / & * + = @ # %
"""
ENGLISH = """
the The and And a A I to of you my is in that not me it for be with your his he this
have will so as but Hello hello world King Queen Lord Citizen First Second love man good
speak hear New York Rome Tokyo
"""


def classes_lex():
    """The entries of lex.csv as (surface, class, features), in a fixed order."""
    entries = []

    def add(surface, cls, *features, base=None, reading="*"):
        feats = list(features) + ["*"] * (6 - len(features))
        feats.append(base if base is not None else surface)
        feats += [reading, reading]
        entries.append((surface, cls, ",".join(feats)))

    def spaced(block):
        return [w for w in block.split() if w]

    for item in PARTICLES_CASE.replace("\n", " ").split("|"):
        surface, detail = item.split()
        add(surface, 4, "助詞", *detail.split(","))
    for item in PARTICLES_BIND.replace("\n", " ").split("|"):
        surface, detail = item.split()
        add(surface, 5, "助詞", *detail.split(","))
    for item in AUXILIARIES.replace("\n", " ").split("|"):
        surface, detail = item.split()
        ctype, cform = detail.split(",")
        add(surface, 7, "助動詞", "*", "*", "*", ctype, cform)
    for verb in spaced(GODAN_VERBS):
        stem, ending = verb[:-1], verb[-1]
        row = GODAN[ending]
        for kana, form in zip(row, GODAN_FORMS):
            if verb in ("行く",) and form == "連用タ接続":
                kana = "っ"
            add(stem + kana, 6, "動詞", "自立", "*", "*", f"五段・{ending}", form, base=verb)
        add(stem + row[3], 6, "動詞", "自立", "*", "*", f"五段・{ending}", "命令ｅ", base=verb)
    for verb in spaced(ICHIDAN_VERBS):
        stem = verb[:-1]
        for suffix, form in ICHIDAN_FORMS:
            if stem + suffix:
                add(stem + suffix, 6, "動詞", "自立", "*", "*", "一段", form, base=verb)
    for surface, form in SURU:
        add(surface, 6, "動詞", "自立", "*", "*", "サ変・スル", form, base="する")
    for surface, form in KURU:
        add(surface, 6, "動詞", "自立", "*", "*", "カ変・来ル", form, base="来る")
    for adjective in spaced(ADJECTIVES):
        stem = adjective[:-1]
        for suffix, form in ADJ_FORMS:
            add(stem + suffix, 8, "形容詞", "自立", "*", "*", "形容詞・アウオ段", form,
                base=adjective)
    for noun in spaced(NOUNS):
        add(noun, 1, "名詞", "一般")
    for noun in spaced(KATAKANA_NOUNS):
        add(noun, 1, "名詞", "一般")
    for noun in spaced(PRONOUNS):
        add(noun, 2, "名詞", "代名詞", "一般")
    for noun in spaced(PROPER):
        add(noun, 2, "名詞", "固有名詞", "一般")
    for number in spaced(NUMBERS):
        add(number, 3, "名詞", "数")
    for suffix in spaced(SUFFIXES):
        add(suffix, 11, "名詞", "接尾", "一般")
    for prefix in spaced(PREFIXES):
        add(prefix, 12, "接頭詞", "名詞接続")
    for word in spaced(OTHERS):
        add(word, 9, "副詞", "一般")
    for symbol in spaced(SYMBOLS):
        add(symbol, 10, "記号", "一般")
    for word in spaced(ENGLISH):
        add(word, 1, "名詞", "一般")
    # Surfaces a CSV field has to quote, and one with a space inside.
    add(",", 10, "記号", "読点")
    add('"', 10, "記号", "括弧")
    add("1,000", 3, "名詞", "数")
    add("New York", 2, "名詞", "固有名詞", "地域")
    # The same surface twice in one class with different costs and features.
    add("猫", 1, "名詞", "一般", reading="ネコ")
    add("ある", 9, "連体詞", "*")
    add("君", 11, "名詞", "接尾", "人名")
    return entries


def corpus_kanji_words(n=300):
    """The `n` most frequent runs of exactly two kanji in 吾輩は猫である (ties by text)."""
    def is_kanji(ch):
        return 0x4E00 <= ord(ch) <= 0x9FA5

    counts = collections.Counter()
    for line in read_lines(WAGAHAI):
        run = ""
        for ch in line + "\n":
            if is_kanji(ch):
                run += ch
            else:
                if len(run) == 2:
                    counts[run] += 1
                run = ""
    return [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def jitter(key, spread):
    return int.from_bytes(hashlib.md5(key.encode("utf-8")).digest()[:4], "little") % (
        2 * spread + 1) - spread


def csv_field(text):
    if any(ch in text for ch in ',"') or text != text.strip():
        return '"' + text.replace('"', '""') + '"'
    return text


def lex_csv():
    entries = classes_lex()
    known = {surface for surface, _, _ in entries}
    for word in corpus_kanji_words():
        if word not in known:
            entries.append((word, 1, f"名詞,一般,*,*,*,*,{word},*,*"))
    rows = []
    for k, (surface, cls, features) in enumerate(entries):
        cost = BASE_COST[cls] - 120 * min(len(surface), 4) + jitter(f"{surface}|{features}|{k}", 250)
        rows.append(f"{csv_field(surface)},{cls},{cls},{cost},{features}\n")
    return "".join(rows), len(rows)


def matrix_def():
    lines = MATRIX.strip("\n").split("\n")
    size = len(lines) - 1
    out = [f"{size} {size}\n"]
    for row in lines[1:]:
        cells = row.split()
        left = int(cells[0])
        for right, cost in enumerate(cells[1:]):
            out.append(f"{left} {right} {int(cost)}\n")
    return "".join(out)


def build_dictionary(work):
    """Writes the sources into `work`/src and compiles them into DIC."""
    src = work / "dic-src"
    out = work / "dic-out"
    src.mkdir()
    out.mkdir()
    lex, count = lex_csv()
    for name, text in [("char.def", CHAR_DEF), ("unk.def", UNK_DEF), ("matrix.def", matrix_def()),
                       ("lex.csv", lex), ("dicrc", DICRC)]:
        (src / name).write_text(text, encoding="utf-8")
    # build_dictionary hands its shlex-split argument to mecab-dict-index as argv, so the
    # first word is the program name; a failure exits the process, hence the subprocess.
    args = (f"mecab-dict-index -d {shlex.quote(str(src))} -o {shlex.quote(str(out))} "
            f"-f utf-8 -t utf-8")
    run = subprocess.run([sys.executable, "-c", "import sys, fugashi; fugashi.build_dictionary(sys.argv[1])",
                          args], capture_output=True, text=True)
    if run.returncode != 0 or not (out / "sys.dic").exists():
        sys.exit(f"mecab-dict-index failed:\n{run.stdout}\n{run.stderr}")
    if DIC.exists():
        shutil.rmtree(DIC)
    DIC.mkdir(parents=True)
    for name in ["sys.dic", "unk.dic", "matrix.bin", "char.bin"]:
        shutil.copy(out / name, DIC / name)
    shutil.copy(src / "dicrc", DIC / "dicrc")
    (DIC / "mecabrc").write_bytes(b"")
    print(f"{DIC}: {count} entries in lex.csv")
    for path in sorted(DIC.iterdir()):
        print(f"  {path.name:10} {path.stat().st_size:8} bytes")


# ---------------------------------------------------------------------------------------
# Tokenizer folders.

MECAB_KWARGS = {"mecab_dic": None, "mecab_option": "-d ../bertja-dic"}

FOLDERS = {
    "bertja-mecab-wordpiece": {"do_lower_case": False, "word_tokenizer_type": "mecab",
                               "subword_tokenizer_type": "wordpiece"},
    "bertja-mecab-lower": {"do_lower_case": True, "word_tokenizer_type": "mecab",
                           "subword_tokenizer_type": "wordpiece"},
    "bertja-mecab-char": {"do_lower_case": False, "word_tokenizer_type": "mecab",
                          "subword_tokenizer_type": "character"},
    "bertja-basic": {"do_lower_case": True, "word_tokenizer_type": "basic",
                     "subword_tokenizer_type": "wordpiece"},
}


def config(settings):
    cfg = {"tokenizer_class": "BertJapaneseTokenizer", **settings}
    if settings["word_tokenizer_type"] == "mecab":
        cfg["mecab_kwargs"] = MECAB_KWARGS
    cfg["model_max_length"] = 512
    return cfg


@contextlib.contextmanager
def in_folder(folder):
    """MeCab resolves `-d ../bertja-dic` from the working directory, and needs a mecabrc
    when no `-r` is given: load with `folder` as working directory and MECABRC set."""
    cwd = os.getcwd()
    old = os.environ.get("MECABRC")
    os.environ["MECABRC"] = str(DIC / "mecabrc")
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(cwd)
        if old is None:
            del os.environ["MECABRC"]
        else:
            os.environ["MECABRC"] = old


def mecab_words(lower):
    """transformers' own MecabTokenizer on the tiny dictionary."""
    with in_folder(DIC):
        return MecabTokenizer(do_lower_case=lower, mecab_dic=None, mecab_option="-d .")


def training_lines():
    return nonblank(read_lines(WAGAHAI)) + nonblank(read_lines(SHAKESPEARE)[:EN_SPLIT])


# Kept in every WordPiece alphabet however rare: printable ASCII and Japanese punctuation.
ALPHABET = [chr(c) for c in range(0x21, 0x7F)] + list("、。「」『』・ー々")


def train_wordpiece(lines, size, limit_alphabet=1000, min_count=2):
    """A WordPiece vocab (specials first) trained on lines of space-separated words as
    `tokenizers`' WordPieceTrainer trains one (BPE merges of the most frequent pair of
    adjacent pieces, "##" on every piece that does not start a word, an alphabet of the
    `limit_alphabet` most frequent characters plus ALPHABET, characters outside it
    dropped), but with ties broken by the pieces' text: tokenizers' trainer orders
    equally frequent characters by hash-map order, so its vocab changes from run to run."""
    counts = collections.Counter(w for line in lines for w in line.split())
    char_counts = collections.Counter()
    for word, n in counts.items():
        for ch in word:
            char_counts[ch] += n
    ranked = sorted(char_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    keep = set(ALPHABET) | {ch for ch, _ in ranked[:limit_alphabet]}
    words = []
    for word, n in sorted(counts.items()):
        chars = [ch for ch in word if ch in keep]
        if chars:
            words.append(([chars[0]] + ["##" + ch for ch in chars[1:]], n))
    pieces = {sym for syms, _ in words for sym in syms} | set(ALPHABET)
    vocab = list(SPECIALS)
    vocab += sorted(p for p in pieces if not p.startswith("##"))
    vocab += sorted(p for p in pieces if p.startswith("##"))
    known = set(vocab)

    pair_counts = collections.defaultdict(int)
    where = collections.defaultdict(set)
    for i, (syms, n) in enumerate(words):
        for pair in zip(syms, syms[1:]):
            pair_counts[pair] += n
            where[pair].add(i)
    heap = [(-n, a, b) for (a, b), n in pair_counts.items()]
    heapq.heapify(heap)
    while len(vocab) < size and heap:
        neg, a, b = heapq.heappop(heap)
        if pair_counts.get((a, b), 0) != -neg:
            continue  # stale entry
        if -neg < min_count:
            break
        merged = a + b[2:] if b.startswith("##") else a + b
        if merged not in known:
            known.add(merged)
            vocab.append(merged)
        changed = set()
        for i in sorted(where.pop((a, b))):
            syms, n = words[i]
            for pair in zip(syms, syms[1:]):
                pair_counts[pair] -= n
                changed.add(pair)
            out = []
            j = 0
            while j < len(syms):
                if j + 1 < len(syms) and syms[j] == a and syms[j + 1] == b:
                    out.append(merged)
                    j += 2
                else:
                    out.append(syms[j])
                    j += 1
            words[i] = (out, n)
            for pair in zip(out, out[1:]):
                pair_counts[pair] += n
                where[pair].add(i)
                changed.add(pair)
        pair_counts.pop((a, b), None)
        for pair in sorted(changed):
            n = pair_counts.get(pair, 0)
            if n > 0:
                heapq.heappush(heap, (-n, pair[0], pair[1]))
            else:
                pair_counts.pop(pair, None)
    return vocab


def vocabularies():
    """{folder: vocab tokens}."""
    lines = training_lines()
    vocabs = {}
    for name, lower in [("bertja-mecab-wordpiece", False), ("bertja-mecab-lower", True)]:
        mecab = mecab_words(lower)
        words = [" ".join(mecab.tokenize(line)) for line in lines]
        vocabs[name] = train_wordpiece(words, 4000)
    basic = BasicTokenizer(do_lower_case=True, tokenize_chinese_chars=False)
    vocabs["bertja-basic"] = train_wordpiece([" ".join(basic.tokenize(l)) for l in lines], 4000)
    counts = collections.Counter()
    for line in lines:
        counts.update(unicodedata.normalize("NFKC", line))
    chars = [c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
             if not c.isspace()][:2500]
    vocabs["bertja-mecab-char"] = SPECIALS + chars
    for name, tokens in vocabs.items():
        for t in tokens:
            assert t and "\n" not in t and "\r" not in t and t == t.strip(), repr(t)
    return vocabs


PROBES = [
    "吾輩は猫である。名前はまだ無い。",
    "どこで生れたかとんと見当がつかぬ。",
    "　私はその人を常に先生と呼んでいた。",
    "今日はとても良い天気ですね。明日は雨でしょう。",
    "東京都に住んでいます。",
    "日本語の文章をトークンに分割します。",
    "書かない、書きます、書く、書けば、書こう、書いた。見ない見ます見れば見よう。",
    "ありがとうございました。どういたしまして。",
    "ははははは、ねえねえ。",
    "Hello, world!",
    "First Citizen: Before we proceed any further, hear me speak.",
    "The QUICK Brown fox — can't, won't; I'm HERE.",
    "ｶﾀｶﾅ半角とｶﾞｷﾞ、ﾊﾟﾋﾟﾌﾟﾍﾟﾎﾟ",
    "全角ＡＢＣ１２３！？（テスト）",
    "　全角スペース　と　半角 スペース",
    "tabs\tand\ttabs\nnewline\r\nCRLF and a lone\rCR",
    "  leading and trailing spaces  ",
    "inner   runs    of     spaces",
    "\u3000私は\u3000\u3000先生と",
    "[MASK]",
    "吾輩は[MASK]である。",
    "吾輩は [MASK] である。",
    "[CLS] 文 [SEP] 文 [PAD]",
    "文[SEP]文",
    "[UNK][UNK]猫",
    "[MASK]の[MASK]",
    "[mask] in lower case is not special",
    "［ＭＡＳＫ］ full-width brackets",
    "[MASK ] and [ MASK] and [[MASK]]",
    "café naïve résumé Ångström",
    "Crème BRÛLÉE à la CAFÉ",
    "e\u0301 combining acute, か\u3099 combining dakuten, ｶ\uff9e",
    "2024年12月7日、1,000円と3.14と1,0000",
    "一二三四五六七八九十百千万億兆",
    "〇が三つ、二十人、百万円",
    "鬱蒼とした龘の森",
    "𠮷野家の𩸽と𠀋",
    "猫🐱が好き🐶🐈\u200d⬛",
    "ヴァリエーションエクスペリエンスアーキテクチャマネージメントシステム",
    "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモ",
    "ラーメン、寿司、天ぷら。",
    "x" * 120,
    "antidisestablishmentarianism " + "supercalifragilisticexpialidocious" * 3,
    "これは句読点のない百文字を超える長い日本語の文でありまして" * 4,
    "control\x07bell \x1bescape and del\x7f",
    "separators\x1c\x1d\x1e\x1fhere",
    "한국어\x1f텍스트",
    "before\x00after NUL",
    "",
    " ",
    "     ",
    "\n",
    "\t \n \r\n",
    "　　　",
    "Mara は Tolven に住んでいる。",
    "質問：氷は冷たいですか？\n答え：はい。",
    "New York と New  York と new york",
    "\"Quoted\" and 'single', 1,000 and \"\"",
    "ΑΒΓ αβγ Ελληνικά",
    "Привет, мир!",
    "々と人々、時々",
    "ー長音ーで始まる",
    "カーらめんとラーめん",
    "ZWSP\u200bhere BOM\ufeffhere NBSP\u00a0here NEL\u0085here LS\u2028here",
    "form\x0cfeed, ogham\u1680space, thin\u2009space, PS\u2029here",
    "①②③ ㈱ ㍻ ﬁne ½",
    "ＡＩとＡＩ　ai AI Ai",
    "I love Tokyo. 東京が大好き!",
    "Ω≈ç√∫˜µ≤≥÷ ∑ ※ ★",
    "吾輩は猫である。" * 20,
    "KING RICHARD III:\nO Tyrrel, I am glad to see thee here.",
    "ＫＩＮＧ　ＨＥＮＲＹ：　Ｍｙ　ｌｏｒｄ",
    "\u00a0\u2003\u3000",
]


def expected(tok, probes):
    cases = []
    for text in probes:
        ids = tok(text)["input_ids"]
        cases.append({
            "text": text,
            "ids": ids,
            "tokens": tok.tokenize(text),
            "plain_ids": tok(text, add_special_tokens=False)["input_ids"],
            "decoded": tok.decode(ids, skip_special_tokens=True),
        })
    specials = {}
    for key in ["cls", "sep", "pad", "unk", "mask"]:
        token = getattr(tok, f"{key}_token")
        specials[key] = [str(token), getattr(tok, f"{key}_token_id")]
    return {
        "versions": {"transformers": transformers.__version__,
                     "fugashi": importlib.metadata.version("fugashi")},
        "how": "AutoTokenizer.from_pretrained(folder) with the folder as working directory and "
               "MECABRC=bertja-dic/mecabrc; ids = tok(text)['input_ids'], tokens = "
               "tok.tokenize(text), plain_ids = tok(text, add_special_tokens=False)['input_ids'], "
               "decoded = tok.decode(ids, skip_special_tokens=True)",
        "class": type(tok).__name__,
        "vocab_size": len(tok),
        "model_max_length": tok.model_max_length,
        "specials": specials,
        "cases": cases,
    }


def held_out(tok, pairs):
    """Ids of held-out corpus lines, named by file and line; every 10th also decoded."""
    names = sorted({name for name, _ in pairs})
    lines = {name: read_lines(name) for name in names}
    cases = []
    for k, (name, i) in enumerate(pairs):
        ids = tok(lines[name][i])["input_ids"]
        case = {"file": names.index(name), "line": i, "ids": ids}
        if k % 10 == 0:
            case["decoded"] = tok.decode(ids, skip_special_tokens=True)
        cases.append(case)
    return {"files": [{"name": n, "sha256": sha256(n)} for n in names], "cases": cases}


def held_out_pairs():
    """{folder: (file, line) pairs}: disjoint slices of こころ and of Shakespeare's tail."""
    kokoro = read_lines(KOKORO)
    en = read_lines(SHAKESPEARE)
    ja = [(KOKORO, i) for i, line in enumerate(kokoro) if line.strip()]
    tail = [(SHAKESPEARE, i) for i in range(EN_SPLIT, len(en)) if en[i].strip()]
    step_ja = len(ja) // len(FOLDERS)
    pairs = {}
    for k, name in enumerate(FOLDERS):
        pairs[name] = ja[k * step_ja:(k + 1) * step_ja] + tail[k * 170:(k + 1) * 170]
    return pairs


def write_json(path, value):
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_gz(path, value):
    data = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    path.write_bytes(gzip.compress(data, mtime=0))


def main():
    with tempfile.TemporaryDirectory() as tmp:
        build_dictionary(Path(tmp))
    vocabs = vocabularies()
    pairs = held_out_pairs()
    total = 0
    for name, settings in FOLDERS.items():
        folder = OUT / name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        (folder / "vocab.txt").write_text("".join(t + "\n" for t in vocabs[name]), encoding="utf-8")
        write_json(folder / "tokenizer_config.json", config(settings))
        with in_folder(folder):
            tok = AutoTokenizer.from_pretrained(".")
        assert type(tok).__name__ == "BertJapaneseTokenizer", type(tok)
        assert len(tok) == len(vocabs[name])
        write_json(folder / "expected.json", expected(tok, PROBES))
        write_gz(folder / "held_out.json.gz", held_out(tok, pairs[name]))
        total += len(pairs[name])
        size = sum(p.stat().st_size for p in folder.iterdir())
        print(f"{folder}: {len(tok)} tokens, {len(PROBES)} probes, {len(pairs[name])} held-out "
              f"lines, {size} bytes")
    print(f"{total} held-out lines in all")


if __name__ == "__main__":
    main()
