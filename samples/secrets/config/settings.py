"""Django settings for the billing service."""

from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "django-insecure-ZF+qh6eH)SUB@*UAeKDZ_3iDwjh3)pAzm&Ha9#=Q"

DEBUG = False
ALLOWED_HOSTS = ["billing.internal.example.com"]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "billing",
        "USER": "billing_app",
        "PASSWORD": "Tr0ub4dor-sPsjqiRMTllgS1",
        "HOST": "db.internal.example.com",
        "PORT": 5432,
    }
}

TIME_ZONE = "Europe/Berlin"
USE_TZ = True
