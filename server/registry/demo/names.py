"""The demo district's words: Chinese names of people, places and things, as a district office
would type them (the data stays as entered; the admin pages translate only their labels)."""

from __future__ import annotations

import random

__all__ = [
    "ACTIVITIES",
    "COMMUNITIES",
    "COMPANY",
    "COMPOUND_NAMES",
    "PARTY_KINDS",
    "REQUEST_TITLES",
    "REWARDS",
    "SKILLS",
    "VISIT_NOTES",
    "id_number",
    "person_name",
    "phone_number",
]

_SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
_GIVEN = "伟芳敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华兰红玉兵建国志文"
# (community, the resettled village it was built from)
COMMUNITIES = (
    ("营村社区", "营村"),
    ("摄乐社区", "摄乐村"),
    ("柴村中心社区", "柴村"),
    ("三给社区", "三给村"),
    ("河湾社区", "河湾村"),
)
# Three compounds (小区) a community, each with its party branch.
COMPOUND_NAMES = (
    ("旭赢新区", "锦乐苑", "和顺园"),
    ("摄乐花园", "乐居苑", "嘉和园"),
    ("柴村新苑", "福泽园", "安康小区"),
    ("三给家园", "瑞景苑", "丰泰园"),
    ("河湾新城", "清源苑", "润和园"),
)
COMPANY = "旭赢物业服务公司"
SKILLS = ("电工", "水暖工", "退休护士", "退休教师", "律师", "理发师", "木工")
PARTY_KINDS = ("resident", "in-work", "transient", "retired")
# (category, title)
REQUEST_TITLES = {
    "repair": "单元门锁坏了",
    "plumbing": "卫生间水管滴漏",
    "electrical": "楼道灯不亮",
    "cleaning": "楼道堆放杂物",
    "elderly-care": "每周两次帮忙代购",
    "dispute": "楼上噪音扰民",
    "paperwork": "帮办养老金资格认证",
    "other": "车棚顶棚松动",
}
VISIT_NOTES = ("家中一切正常。", "询问电梯维修进度。", "老人身体尚好，叮嘱按时服药。", "反映楼道灯不亮。")
ACTIVITIES = ("楼道清扫", "走访空巢老人", "学校门口护学岗", "防汛值守", "小区义务巡逻")
REWARDS = ("便民菜市场代金券", "物业费折扣", "食用油一桶", "大米五公斤")


def person_name(rng: random.Random) -> str:
    given = rng.choice(_GIVEN) + (rng.choice(_GIVEN) if rng.random() < 0.7 else "")
    return rng.choice(_SURNAMES) + given


def phone_number(rng: random.Random) -> str:
    return f"1{rng.choice('3578')}{rng.randint(0, 9)}{rng.randint(10_000_000, 99_999_999)}"


def id_number(rng: random.Random, birth_year: int) -> str:
    """A well-formed (fictional) 18-character ID number with its ISO 7064 check character."""
    body = (
        f"3703{rng.randint(1, 99):02d}{birth_year}{rng.randint(1, 12):02d}"
        f"{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
    )
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(d) * w for d, w in zip(body, weights, strict=True))
    return body + "10X98765432"[total % 11]
