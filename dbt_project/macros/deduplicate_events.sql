{#-
    Kafka delivers at least once, so a producer retry or a replay can land the same event twice.
    Keep the first copy in log order: the earliest (partition, offset) wins, deterministically.
    A copy carries its original timestamp, so the window partitions by (event_id, event_at): a filter
    on event_at (a daily build's days) then goes below the window and into the Iceberg scan instead
    of deduplicating every raw row first. Two different events that share an id but not a timestamp
    both stay, and the staging models' `unique` test on event_id fails the build loudly.
-#}
{% macro deduplicate_events(relation) -%}
    {{ first_row_per(relation, 'event_id, event_at', 'kafka_partition, kafka_offset') }}
{%- endmacro %}
