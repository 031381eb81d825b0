{#-
    One step of the ordered funnel after `previous_step` (a relation of activity_date, category, user_id
    and reached_at, the time the user reached that step): per row, the user's first `event_type` event
    among `events` (which carry activity_date) on the same UTC day, at or after `reached_at` (events with
    the same timestamp count as in order). With `same_category`, only events of the row's category count
    (a cart of a product of that category); otherwise any such event of the user does (a checkout or a
    purchase has no product). Users who never took the step have no row.
-#}
{% macro funnel_step(previous_step, events, event_type, same_category=false) -%}
    select
        {{ previous_step }}.activity_date,
        {{ previous_step }}.category,
        {{ previous_step }}.user_id,
        min(step_events.event_at) as reached_at
    from {{ previous_step }}
    inner join {{ events }} as step_events
        on {{ previous_step }}.activity_date = step_events.activity_date
        and {{ previous_step }}.user_id = step_events.user_id
        and {{ previous_step }}.reached_at <= step_events.event_at
        {%- if same_category %}
        and {{ previous_step }}.category = step_events.category
        {%- endif %}
    where step_events.event_type = '{{ event_type }}'
    group by 1, 2, 3
{%- endmacro %}
