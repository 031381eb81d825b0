{#-
    The snapshot input for a change log: per key, the earliest change the snapshot has not captured yet.

    A dbt snapshot records one version per key per run, so fed the latest state it would skip every
    version that came and went between two runs. Fed the next uncaptured change instead, each
    `dbt snapshot` advances every key by one version; the build repeats it until nothing is pending
    (see defs/transform/assets.py), so the history is complete however many changes a batch holds.
    The snapshot is looked up at compile time of each run, so this must stay ephemeral. Compiled without
    introspection (`dbt compile --no-introspect`, as tests/marts/test_trino_compile.py does) it is not
    looked up: the input is then every change, as on the first run.
-#}
{% macro next_unsnapshotted_change(changes, snapshot_name, key, columns) -%}
{%- set snapshot = adapter.get_relation(
    database=target.database, schema=generate_schema_name('snapshots', none), identifier=snapshot_name
) if flags.INTROSPECT else none -%}
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
    {{ first_row_per(
        'pending',
        key,
        'changed_at, kafka_partition, kafka_offset',
        key ~ ', changed_at, ' ~ (columns | join(', ')),
    ) }}
)

select * from final
{%- endmacro %}
