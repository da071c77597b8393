from django.urls import include, path
from rest_framework.routers import SimpleRouter

from contacts.api import ExternalContactViewSet

# SimpleRouter: the API root (scrm.api_root) lists every endpoint, not only this router's.
router = SimpleRouter()
router.register("contacts", ExternalContactViewSet, basename="contact")

urlpatterns = router.urls
urlpatterns += [path("conversions/", include("contacts.api_conversions"))]
urlpatterns.insert(0, path("contacts/", include("contacts.api_timeline")))  # before the router
