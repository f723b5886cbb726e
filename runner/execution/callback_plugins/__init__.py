"""Ansible plugins shipped with runbook: this folder is put on ANSIBLE_CALLBACK_PLUGINS."""
