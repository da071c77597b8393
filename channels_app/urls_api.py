from django.urls import path
from rest_framework.renderers import JSONRenderer
from rest_framework.routers import SimpleRouter

from channels_app.api import (
    AttributionViewSet,
    ChannelCostViewSet,
    ChannelViewSet,
    LiveCodeViewSet,
    PNGRenderer,
    ReferralCodeViewSet,
    ScanViewSet,
)

# SimpleRouter: the API root is scrm.api_root, listing every endpoint.
router = SimpleRouter()
router.register("channels", ChannelViewSet, basename="channel")
router.register("channel-costs", ChannelCostViewSet, basename="channel-cost")
router.register("live-codes", LiveCodeViewSet, basename="live-code")
router.register("scans", ScanViewSet, basename="scan")
router.register("attributions", AttributionViewSet, basename="attribution")
router.register("referral-codes", ReferralCodeViewSet, basename="referral-code")

urlpatterns = [
    # A file name, without the trailing slash the router would add.
    path(
        "live-codes/<int:pk>/qr.png",
        LiveCodeViewSet.as_view({"get": "qr_png"}, renderer_classes=[JSONRenderer, PNGRenderer]),
        name="live-code-qr",
    ),
    *router.urls,
]
