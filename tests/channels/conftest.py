import pytest

from channels_app.models import Channel, LiveCode
from channels_app.services.live_codes import live_code_create
from contacts.services import staff_get_or_create


@pytest.fixture
def channel(corp):
    return Channel.objects.create(corp=corp, name="朋友圈广告", code="pyq_0012", channel_type=2,
                                  utm_source="pyq")  # fmt: skip


@pytest.fixture
def staff(corp):
    """Our Staff rows for the sandbox corp's members staff01..staff03."""
    return [staff_get_or_create(corp=corp, userid=f"staff0{i}") for i in (1, 2, 3)]


@pytest.fixture
def make_code(corp, channel, staff):
    def make(mode="landing", caps=(None, None, None), strategy="least_loaded", **fields):
        caps = list(caps) + [None] * (len(staff) - len(caps))
        pool = [{"staff": s, "daily_cap": cap} for s, cap in zip(staff, caps, strict=True)]
        return live_code_create(
            corp=corp, channel=channel, name=fields.pop("name", "618 海报"),
            slug=fields.pop("slug", f"{mode}-{LiveCode.objects.count() + 1}"),
            mode=mode, strategy=strategy, pool=pool, **fields,
        )  # fmt: skip

    return make
