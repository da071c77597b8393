"""Labels for WeCom's add_way (来源定义).

Unknown values are kept as numbers: WeCom's list keeps growing.
"""

from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

ADD_WAY_LABELS = {
    0: _("Unknown source"),  # 未知来源 (also after a mutual delete and re-add)
    1: _("Scanned a QR code"),  # 扫描二维码
    2: _("Searched a mobile number"),  # 搜索手机号
    3: _("Business card shared"),  # 名片分享
    4: _("Group chat"),  # 群聊
    5: _("Phone contacts"),  # 手机通讯录
    6: _("WeChat contact"),  # 微信联系人
    7: _("Friend request from WeChat (legacy)"),  # 来自微信的添加好友申请
    8: _("Support staff added on installing a third-party app"),
    9: _("Searched an email address"),  # 搜索邮箱
    10: _("WeChat Channels"),  # 视频号添加
    11: _("Schedule participant"),  # 通过日程参与人添加
    12: _("Meeting participant"),  # 通过会议参与人添加
    13: _("WeCom account of a WeChat friend"),  # 添加微信好友对应的企业微信
    14: _("Smart hardware dedicated support"),  # 通过智慧硬件专属客服添加
    15: _("On-site service staff"),  # 通过上门服务客服添加
    16: _("Customer acquisition link"),  # 通过获客链接添加
    17: _("Custom development"),  # 通过定制开发添加
    18: _("Demand reply"),  # 通过需求回复添加
    21: _("Third-party pre-sales support"),  # 通过第三方售前客服添加
    22: _("Possible business partner"),  # 通过可能的商务伙伴添加
    24: _("Friend request received by a WeChat account"),  # 通过接受微信账号收到的好友申请添加
    201: _("Shared by an internal member"),  # 内部成员共享
    202: _("Assigned by an administrator"),  # 管理员/负责人分配
}

ADD_WAY_CHOICES = sorted(ADD_WAY_LABELS.items())


def add_way_label(add_way: int | None) -> str:
    if add_way is None:
        return ""
    label = ADD_WAY_LABELS.get(add_way)
    return str(label) if label is not None else gettext("Unknown add_way %(n)s") % {"n": add_way}


# add_way values whose oper_userid names a colleague who shared the customer (201) or an admin
# who assigned it (202): the member who got the customer did not initiate the add.
HANDED_OVER_ADD_WAYS = frozenset({201, 202})


def add_initiator(
    *, add_way: int | None, oper_userid: str, userid: str, external_userid: str
) -> str:
    """Who initiated an add, from WeCom's follow_user.oper_userid (WECOM_API.md 4.1): the
    member's own userid when the member added the customer, the customer's external_userid
    when the customer added, the sharer or admin for add_way 201/202. A RelationEvent.Initiator
    value; "" while WeCom has not told us (the callback carries no oper_userid)."""
    if not oper_userid:
        return ""
    if add_way in HANDED_OVER_ADD_WAYS:
        return "handed_over"
    if oper_userid == userid:
        return "staff"
    if oper_userid == external_userid:
        return "customer"
    return "other"
