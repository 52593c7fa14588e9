# Welfare technology (part of package akson.authz): a device (safety alarm, medicine
# dispenser, home measurement) works for a patient only while the patient's device consent
# for it holds. Assigning the device to the patient (DeviceAssignment) and recording one of
# its messages (DeviceMessage) are writes that need that consent; resource.id names the
# device (its id in welfare's registry). Unassigning (a write of the Device) and reading the
# registry do not: a withdrawn consent must not keep a device assigned.
package akson.authz

# The types a device consent is required for; in the policy, not a data table, so a missing
# table cannot switch the requirement off.
_device_consent_types := {"DeviceAssignment", "DeviceMessage"}

_overrides contains "no_device_consent" if {
	input.action == "write"
	input.resource.type in _device_consent_types
	not _device_consent_holds
}

# Device messages come from the hubs and vendors that run the devices (system clients), never
# from a person's token: a care relation does not make a practitioner a device.
_overrides contains "device_messages_from_systems_only" if {
	input.resource.type == "DeviceMessage"
	not _is_system
}

# An active directive of kind device about this patient naming this device.
_device_consent_holds if {
	_nonempty_string(input.resource.id)
	some directive in _directives
	directive.kind == "device"
	directive.device == input.resource.id
}
