"""State of the sandbox, the fake WeCom. These tables play WeCom's side, never ours."""

from django.db import models


class SandboxCorp(models.Model):
    corp_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=128)
    secret = models.CharField(max_length=128)
    callback_token = models.CharField(max_length=32)
    encoding_aes_key = models.CharField(max_length=43)
    callback_url = models.CharField(max_length=512, blank=True)

    def __str__(self) -> str:
        return self.corp_id


class SandboxAccessToken(models.Model):
    corp = models.ForeignKey(SandboxCorp, on_delete=models.CASCADE, related_name="tokens")
    token = models.CharField(max_length=128, unique=True)
    expires_at = models.DateTimeField()


class SandboxMember(models.Model):
    corp = models.ForeignKey(SandboxCorp, on_delete=models.CASCADE, related_name="members")
    userid = models.CharField(max_length=64)
    name = models.CharField(max_length=128)
    department = models.CharField(max_length=128, blank=True)
    customer_contact_enabled = models.BooleanField(default=True)
    activated = models.BooleanField(default=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["corp", "userid"], name="sbx_member_uq")]


class SandboxCustomer(models.Model):
    corp = models.ForeignKey(SandboxCorp, on_delete=models.CASCADE, related_name="customers")
    external_userid = models.CharField(max_length=64)
    name = models.CharField(max_length=128)
    type = models.PositiveSmallIntegerField(default=1)
    gender = models.PositiveSmallIntegerField(default=0)
    unionid = models.CharField(max_length=64, blank=True)
    avatar = models.CharField(max_length=512, blank=True)
    corp_name = models.CharField(max_length=128, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["corp", "external_userid"], name="sbx_customer_uq")
        ]


class SandboxFollow(models.Model):
    """A member's customer, as WeCom knows it (follow_user / follow_info)."""

    customer = models.ForeignKey(SandboxCustomer, on_delete=models.CASCADE, related_name="follows")
    userid = models.CharField(max_length=64)
    createtime = models.BigIntegerField()
    add_way = models.IntegerField(default=1)
    state = models.CharField(max_length=64, blank=True)
    oper_userid = models.CharField(max_length=64, blank=True)
    remark = models.CharField(max_length=255, blank=True)
    description = models.TextField(blank=True)
    tag_ids = models.JSONField(default=list)
    deleted = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["customer", "userid"], name="sbx_follow_uq")]


class SandboxContactWay(models.Model):
    corp = models.ForeignKey(SandboxCorp, on_delete=models.CASCADE, related_name="contact_ways")
    config_id = models.CharField(max_length=64, unique=True)
    type = models.PositiveSmallIntegerField()
    scene = models.PositiveSmallIntegerField()
    style = models.PositiveSmallIntegerField(null=True, blank=True)
    remark = models.CharField(max_length=64, blank=True)
    skip_verify = models.BooleanField(default=True)
    state = models.CharField(max_length=64, blank=True)
    users = models.JSONField(default=list)
    party = models.JSONField(default=list)
    is_exclusive = models.BooleanField(default=False)
    qr_code = models.CharField(max_length=512, blank=True)
    created_at = models.BigIntegerField()


class SandboxTagGroup(models.Model):
    corp = models.ForeignKey(SandboxCorp, on_delete=models.CASCADE, related_name="tag_groups")
    group_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=64)
    order = models.BigIntegerField(default=0)
    create_time = models.BigIntegerField()


class SandboxTag(models.Model):
    group = models.ForeignKey(SandboxTagGroup, on_delete=models.CASCADE, related_name="tags")
    tag_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=64)
    order = models.BigIntegerField(default=0)
    create_time = models.BigIntegerField()


class SandboxWelcomeCode(models.Model):
    """A welcome_code: usable once, within 20 seconds of the add."""

    corp = models.ForeignKey(SandboxCorp, on_delete=models.CASCADE, related_name="welcome_codes")
    code = models.CharField(max_length=64, unique=True)
    userid = models.CharField(max_length=64)
    external_userid = models.CharField(max_length=64)
    issued_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    message = models.JSONField(null=True, blank=True)


class SandboxDelivery(models.Model):
    """One callback POST the sandbox made to the app, with what the app answered."""

    corp = models.ForeignKey(SandboxCorp, on_delete=models.CASCADE, related_name="deliveries")
    change_type = models.CharField(max_length=64)
    external_userid = models.CharField(max_length=64, blank=True)
    create_time = models.BigIntegerField()
    http_status = models.IntegerField(null=True, blank=True)
    error = models.CharField(max_length=255, blank=True)
    sent_at = models.DateTimeField(auto_now_add=True)


class SandboxFault(models.Model):
    """Makes the next `remaining` calls of `endpoint` fail (errcode, or HTTP status if 5xx)."""

    endpoint = models.CharField(max_length=128)
    errcode = models.IntegerField()
    errmsg = models.CharField(max_length=128, blank=True)
    remaining = models.PositiveIntegerField(default=1)


class SandboxJoinWay(models.Model):
    corp = models.ForeignKey(SandboxCorp, on_delete=models.CASCADE, related_name="join_ways")
    config_id = models.CharField(max_length=64, unique=True)
    scene = models.PositiveSmallIntegerField()
    remark = models.CharField(max_length=64, blank=True)
    auto_create_room = models.BooleanField(default=True)
    room_base_name = models.CharField(max_length=64, blank=True)
    room_base_id = models.PositiveIntegerField(default=1)
    chat_ids = models.JSONField(default=list)
    state = models.CharField(max_length=64, blank=True)
    qr_code = models.CharField(max_length=512, blank=True)


class SandboxGroupChat(models.Model):
    corp = models.ForeignKey(SandboxCorp, on_delete=models.CASCADE, related_name="group_chats")
    chat_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=64)
    owner = models.CharField(max_length=64)
    create_time = models.BigIntegerField()


class SandboxGroupMember(models.Model):
    chat = models.ForeignKey(SandboxGroupChat, on_delete=models.CASCADE, related_name="members")
    userid = models.CharField(max_length=64)
    type = models.PositiveSmallIntegerField(default=2)
    join_time = models.BigIntegerField()
    join_scene = models.PositiveSmallIntegerField(default=3)
    state = models.CharField(max_length=64, blank=True)
    name = models.CharField(max_length=64, blank=True)
