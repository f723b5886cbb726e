"""Ansible vars plugins shipped with runbook: this folder is put on ANSIBLE_VARS_PLUGINS."""
