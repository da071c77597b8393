from django.urls import include, path
from rest_framework.routers import DefaultRouter

from contacts.api import ExternalContactViewSet

router = DefaultRouter()
router.register("contacts", ExternalContactViewSet, basename="contact")

urlpatterns = router.urls
urlpatterns += [path("conversions/", include("contacts.api_conversions"))]
urlpatterns.insert(0, path("contacts/", include("contacts.api_timeline")))  # before the router
