"""Typed, validated configuration: params.yaml -> one frozen pydantic model per section.

One module per section (common, pretrain, teacher, pseudolabel, student, evaluate), so a stage's code
depends only on the sections it reads: editing the student's schema reruns no stage before `student`.
This file imports nothing on purpose: importing `pipeline.config.<section>` runs it first.
"""
