{#-
    Kafka delivers at least once, so a producer retry can land the same event_id twice.
    Keep the first copy in log order: the earliest (partition, offset) wins, deterministically.
-#}
{% macro deduplicate_events(relation) -%}
    select *
    from {{ relation }}
    qualify row_number() over (partition by event_id order by kafka_partition, kafka_offset) = 1
{%- endmacro %}
