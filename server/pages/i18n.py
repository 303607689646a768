"""Labels of the admin pages in English and Chinese; ``?lang=`` switches, a cookie remembers."""

from __future__ import annotations

from collections.abc import Callable

from server.desk.labels import DESK_LABELS

__all__ = ["LANGUAGES", "LANG_COOKIE", "choose_language", "translator"]

LANGUAGES = ("en", "zh")
LANG_COOKIE = "gridsync_lang"

# Chinese labels use Chinese punctuation on purpose.
_LABELS: dict[str, tuple[str, str]] = {
    "app": ("gridsync admin", "gridsync 管理"),
    "inbox": ("Conflict inbox", "冲突收件箱"),
    "dashboard": ("Dashboard", "数据看板"),
    "bulk": ("Resolve by rule", "按规则批量处理"),
    "enrolment": ("Link a phone", "绑定手机"),
    "enrolment_intro": (
        "Choose the worker; the phone's field app takes the code below, typed or scanned. It works once.",
        "选择网格员；手机上的网格通应用输入或扫描下方的绑定码。绑定码只能使用一次。",
    ),
    "enrolment_user": ("Worker", "人员"),
    "enrolment_issue": ("Make a code", "生成绑定码"),
    "enrolment_code": ("Enrolment code", "绑定码"),
    "enrolment_expires": ("Valid until", "有效期至"),
    "sign_in": ("Sign in", "登录"),
    "sign_out": ("Sign out", "退出"),
    "name": ("User name", "用户名"),
    "password": ("Password", "密码"),
    "bad_sign_in": ("Unknown user name or wrong password", "用户名或密码错误"),
    "signed_in_as": ("Signed in as", "当前用户"),
    "open": ("Open", "待处理"),
    "resolved": ("Resolved", "已解决"),
    "status": ("Status", "状态"),
    "community": ("Community", "社区"),
    "grid": ("Grid", "网格"),
    "collection": ("Collection", "数据集"),
    "kind": ("Kind", "类型"),
    "field": ("Field", "字段"),
    "record": ("Record", "记录"),
    "fields": ("Fields", "字段"),
    "opened": ("Opened", "发现时间"),
    "updated": ("Updated", "更新"),
    "any": ("Any", "全部"),
    "filter": ("Filter", "筛选"),
    "clear": ("Clear", "清除"),
    "total": ("Total", "合计"),
    "count": ("Count", "数量"),
    "none_open": ("No conflicts here. Every phone agrees.", "这里没有冲突，所有手机数据一致。"),
    "next_page": ("Next page", "下一页"),
    "kind_field": ("Different values", "数值不同"),
    "kind_delete": ("Deleted while edited", "删除与编辑冲突"),
    "kind_transition": ("Concurrent status moves", "并发状态变更"),
    "kind_overspend": ("Points overspent", "积分超支"),
    "kind_few_served": ("Central households serving fewer than 5", "联系不足5户的党员中心户"),
    "few_served_help": (
        "A party-member central household serves 5-10 households: link the neighbours it looks after.",
        "党员中心户应联系5-10户：请补充其联系的住户。",
    ),
    "conflict": ("Conflict", "冲突"),
    "overspend_help": (
        "Both redemptions are kept (the ledger is append-only): settle it with the volunteer and record it in the ledger.",
        "两笔兑换都已保留（积分台账只增不改）：请与志愿者核实，并在台账中补记。",
    ),
    "back": ("Back to the inbox", "返回收件箱"),
    "written_by": ("Written by", "填写人"),
    "device": ("Device", "设备"),
    "device_time": ("Device time", "设备时间"),
    "arrived": ("Arrived at server", "到达服务器"),
    "started_from": ("Started from", "修改前的值"),
    "nothing_before": ("(new)", "（新建）"),
    "shown_now": ("shown now", "当前显示"),
    "keep_this": ("Keep this", "保留此值"),
    "merged_value": ("Merged value", "合并后的值"),
    "use_merged": ("Use merged value", "使用合并值"),
    "or_choose": ("Or choose per field and resolve", "或逐个字段选择后提交"),
    "resolve": ("Resolve", "提交处理"),
    "deleted_while_edited": (
        "One phone deleted this record while another edited it.",
        "一台手机删除了此记录，另一台同时在编辑。",
    ),
    "keep_record": ("Keep the record", "保留记录"),
    "confirm_delete": ("Confirm the delete", "确认删除"),
    "deleted": ("deleted", "已删除"),
    "current_record": ("The record now", "记录当前内容"),
    "history": ("Record history", "记录历史"),
    "events": ("Conflict history", "冲突经过"),
    "event_opened": ("opened", "出现冲突"),
    "event_updated": ("another value arrived", "又有新值"),
    "event_resolved": ("resolved", "已解决"),
    "when": ("When", "时间"),
    "change": ("Change", "变更"),
    "value": ("Value", "值"),
    "who": ("Who", "人员"),
    "resolved_by": ("Resolved by", "处理人"),
    "via_admin": ("admin", "管理员"),
    "via_bulk": ("rule", "批量规则"),
    "via_sync": ("a phone", "手机端"),
    "done": (
        "Resolved. Every phone receives the outcome on its next sync.",
        "已处理，各手机下次同步时会收到结果。",
    ),
    "error": ("Not resolved", "未能处理"),
    "rule": ("Rule", "规则"),
    "rule_newest": ("Newest value wins", "以最新值为准"),
    "rule_oldest": ("Oldest value wins", "以最早值为准"),
    "rule_keep": ("Keep the records", "保留记录"),
    "rule_delete": ("Confirm the deletes", "确认删除"),
    "preview": ("Preview", "预览"),
    "apply": ("Apply to these", "对以下记录执行"),
    "outcome": ("Outcome", "结果"),
    "outcome_planned": ("planned", "待执行"),
    "outcome_applied": ("applied", "已执行"),
    "outcome_stale": ("changed meanwhile, skipped", "期间已变化，已跳过"),
    "outcome_rejected": ("refused", "被拒绝"),
    "nothing_matches": ("No open conflict matches.", "没有符合条件的待处理冲突。"),
    "open_conflicts": ("Open conflicts", "待处理冲突"),
    "by_kind": ("By kind", "按类型"),
    "by_grid": ("By grid", "按网格"),
    "by_community": ("By community", "按社区"),
    "visit_coverage": (
        "Households not visited in the last 30 days, per grid",
        "近30天尚未走访的住户（按网格）",
    ),
    "to_visit": ("To visit", "待走访"),
    "not_visited": ("Households not visited in 30 days", "近30天未走访住户"),
    "requests_overdue": ("Requests past their due date", "超期未办结诉求"),
    "under_agreement": ("under a curtain agreement", "户签订窗帘约定"),
    "households": ("Households", "户数"),
    "visited": ("Visited", "已走访"),
    "coverage": ("Coverage", "覆盖率"),
    "open_hazards": ("Open hazards", "未整改隐患"),
    "severity": ("Severity", "严重程度"),
    "severity_critical": ("Critical", "危急"),
    "severity_high": ("High", "较大"),
    "severity_medium": ("Medium", "一般"),
    "severity_low": ("Low", "轻微"),
    "age": ("Age", "已存在"),
    "requests": ("Service requests", "服务诉求"),
    "opened_count": ("Opened", "受理"),
    "completed": ("Completed", "已完成"),
    "overdue": ("Overdue", "已超期"),
    "completion_rate": ("Completion rate", "完成率"),
    "satisfaction": ("Mean satisfaction", "平均满意度"),
    "no_signal": ("Households to visit today (curtain agreement)", "今日需上门查看（窗帘约定）"),
    "deliberations": ("Deliberation cases (eight-step method)", "议事协商（八步工作法）"),
    "cases": ("Cases", "议题"),
    "settled": ("Settled", "已办结"),
    "in_progress": ("In progress", "办理中"),
    "step_collect": ("Collect problems", "收集问题"),
    "step_topic": ("Set the topic", "形成议题"),
    "step_review": ("Review the topic", "审核议题"),
    "step_pre-meeting": ("Pre-meeting talks", "会前沟通"),
    "step_meeting": ("Meeting", "会议协商"),
    "step_publish": ("Decision published", "决策公布"),
    "step_implement": ("Implementation", "组织实施"),
    "step_supervise": ("Democratic supervision", "民主监督"),
    "step_settled": ("Settled", "已办结"),
    "step_dropped": ("Not taken up", "未立项"),
    "language": ("中文", "English"),
    "forbidden": ("Only community and district admins use these pages.", "仅社区和街道管理员可使用此页面。"),
}


_LABELS.update(DESK_LABELS)


def choose_language(query: str | None, cookie: str | None, accept: str | None) -> str:
    for candidate in (query, cookie):
        if candidate in LANGUAGES:
            return candidate
    return "zh" if accept and accept.lower().startswith("zh") else "en"


def translator(lang: str) -> Callable[[str], str]:
    index = LANGUAGES.index(lang) if lang in LANGUAGES else 0

    def t(key: str) -> str:
        pair = _LABELS.get(key)
        return key if pair is None else pair[index]

    return t
