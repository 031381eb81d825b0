{#-
    The snapshot input for a change log: per key, the earliest change the snapshot has not captured yet.

    A dbt snapshot records one version per key per run, so fed the latest state it would skip every
    version that came and went between two runs. Fed the next uncaptured change instead, each
    `dbt snapshot` advances every key by one version; the build repeats it until nothing is pending
    (see defs/transform/assets.py), so the history is complete however many changes a batch holds.
    The snapshot is looked up at compile time of each run, so this must stay ephemeral.
-#}
{% macro next_unsnapshotted_change(changes, snapshot_name, key, columns) -%}
{%- set snapshot = adapter.get_relation(database=target.database, schema='snapshots', identifier=snapshot_name) -%}
with

changes as (
    select * from {{ changes }}
),

{% if snapshot is not none -%}
captured as (
    select {{ key }}, max(changed_at) as captured_until
    from {{ snapshot }}
    group by 1
),

pending as (
    select changes.*
    from changes
    left join captured using ({{ key }})
    where captured.captured_until is null or changes.changed_at > captured.captured_until
),
{%- else -%}
pending as (
    select * from changes
),
{%- endif %}

final as (
    select {{ key }}, changed_at, {{ columns | join(', ') }}
    from pending
    qualify row_number() over (partition by {{ key }} order by changed_at, kafka_partition, kafka_offset) = 1
)

select * from final
{%- endmacro %}
